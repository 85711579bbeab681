// The original system's k6 load test, run unchanged against ticketd (or any peer of it):
//   scenario 1: 50 VUs GET  {VU_VACANCY_URL}/api/v1/available
//   scenario 2: 50 VUs POST {VU_BASE_URL}/api/v1/purchase {"qty": QTY}
//   thresholds: p(95) of http_req_duration < 500 ms, purchase_success rate > 0
// Env: VU_BASE_URL (http://localhost:8002), VU_VACANCY_URL (http://localhost:8001),
//      QTY (1), DURATION (60s), SLEEP (0.5), SUMMARY_DIR (.).
// The defaults are the original's microservice ports. ticketd in its default monolith mode serves
// everything on one port:
//   k6 run -e VU_BASE_URL=http://localhost:8000 -e VU_VACANCY_URL=http://localhost:8000 \
//          bench/k6/ticket-system-k6.js
// SLEEP is not spelled out in the original documents; 0.5 s per iteration is inferred from their
// "100 VUs, ~200 req/s" (baseline 197.86 req/s at 4.61 ms avg). SLEEP=0 saturates instead.
//
// handleSummary prints a text summary (thresholds, checks, request rate and latency) and writes
// it, with k6's full summary data as JSON, to SUMMARY_DIR/k6-summary.txt and k6-summary.json.
// It formats the text itself rather than importing k6-summary from jslib.k6.io, so the script
// runs on machines without internet access.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';

const BASE_URL = __ENV.VU_BASE_URL || 'http://localhost:8002';
const VACANCY_URL = __ENV.VU_VACANCY_URL || 'http://localhost:8001';
const QTY = parseInt(__ENV.QTY || '1', 10);
const DURATION = __ENV.DURATION || '60s';
const SLEEP = parseFloat(__ENV.SLEEP || '0.5');
const SUMMARY_DIR = __ENV.SUMMARY_DIR || '.';

const purchaseSuccess = new Rate('purchase_success');

export const options = {
  scenarios: {
    availability: { executor: 'constant-vus', vus: 50, duration: DURATION, exec: 'checkAvailability' },
    purchase: { executor: 'constant-vus', vus: 50, duration: DURATION, exec: 'purchaseTickets' },
  },
  thresholds: {
    http_req_duration: ['p(95)<500'],
    purchase_success: ['rate>0'],
  },
  // Percentiles the summary should carry, beyond k6's default avg/min/med/max/p(90)/p(95).
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)'],
};

export function checkAvailability() {
  const res = http.get(`${VACANCY_URL}/api/v1/available`);
  check(res, {
    'available: status 200': (r) => r.status === 200,
    'available: has qty': (r) => r.json('qty') !== undefined,
  });
  if (SLEEP > 0) sleep(SLEEP);
}

export function purchaseTickets() {
  const res = http.post(`${BASE_URL}/api/v1/purchase`, JSON.stringify({ qty: QTY }), {
    headers: { 'Content-Type': 'application/json' },
  });
  const ok = res.status === 200 && res.json('success') === true;
  purchaseSuccess.add(ok);
  check(res, { 'purchase: status 200': (r) => r.status === 200 });
  if (SLEEP > 0) sleep(SLEEP);
}

function fixed(v, digits) {
  return v === undefined || v === null ? '-' : Number(v).toFixed(digits);
}

// The text summary: thresholds, checks, then the main metrics (latencies in ms).
function summaryText(data) {
  const m = data.metrics;
  const lines = [];
  lines.push('ticket-system-k6: 50 VUs available + 50 VUs purchase, ' +
    `DURATION=${DURATION}, SLEEP=${SLEEP}, QTY=${QTY}`);
  lines.push(`  base ${BASE_URL}, vacancy ${VACANCY_URL}`);
  lines.push('');
  lines.push('thresholds:');
  for (const [name, metric] of Object.entries(m)) {
    for (const [rule, result] of Object.entries(metric.thresholds || {})) {
      lines.push(`  ${result.ok ? 'ok  ' : 'FAIL'} ${name} ${rule}`);
    }
  }
  lines.push('checks:');
  const walk = (group) => {
    for (const c of group.checks || []) {
      lines.push(`  ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${c.name}: ${c.passes} passed, ${c.fails} failed`);
    }
    for (const g of group.groups || []) walk(g);
  };
  walk(data.root_group || {});
  lines.push('metrics:');
  const reqs = m.http_reqs ? m.http_reqs.values : {};
  lines.push(`  http_reqs            ${reqs.count} (${fixed(reqs.rate, 1)}/s)`);
  const failed = m.http_req_failed ? m.http_req_failed.values.rate : undefined;
  lines.push(`  http_req_failed      ${fixed(failed * 100, 2)}%`);
  const ok = m.purchase_success ? m.purchase_success.values.rate : undefined;
  lines.push(`  purchase_success     ${fixed(ok * 100, 2)}%`);
  const d = m.http_req_duration ? m.http_req_duration.values : {};
  lines.push(`  http_req_duration ms avg=${fixed(d.avg, 2)} med=${fixed(d.med, 2)} ` +
    `p90=${fixed(d['p(90)'], 2)} p95=${fixed(d['p(95)'], 2)} p99=${fixed(d['p(99)'], 2)} ` +
    `p99.9=${fixed(d['p(99.9)'], 2)} max=${fixed(d.max, 2)}`);
  return lines.join('\n') + '\n';
}

export function handleSummary(data) {
  const text = summaryText(data);
  return {
    stdout: text,
    [`${SUMMARY_DIR}/k6-summary.txt`]: text,
    [`${SUMMARY_DIR}/k6-summary.json`]: JSON.stringify(data, null, 2),
  };
}
