//! The glommio-socket transport: glommio's `TcpStream`, one task per connection, and an accept
//! loop. The fallback for kernels without what the uring transport needs (Linux 6.0+), and
//! `TICKETD_TRANSPORT=glommio`.
//!
//! Each connection task feeds its input to the shard's core and carries out what the core says:
//! write the output when it is released, wait for the core's news ([`ConnEvent`]) while an order
//! waits or output is held, close when output is dropped. A wait is bounded by the head timeout,
//! as the uring transport's head deadline bounds it.
//!
//! Beyond `connections_max` the shard stops accepting and new connections wait in the kernel's
//! backlog: memory stays bounded.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use super::connection::{Connection, Next};
use super::{LINGER, LINGER_BYTES_MAX};
use crate::shard::{ConnEvent, ConnKey, Release, Shard, Step};

/// Bytes read from a socket at once. 4 KiB holds sixteen pipelined wrk requests and keeps an idle
/// connection's buffers at one page.
const READ_BYTES: usize = 4 * 1024;

/// How often the stop watcher looks at the signal flag, and the drain at its connections: the
/// added latency of a shutdown.
const STOP_POLL: Duration = Duration::from_millis(20);

/// A connection as the drain sees it.
struct ConnEntry {
    fd: RawFd,
    idle: Cell<bool>,
}

/// The open connections, for the drain.
type Open = Rc<RefCell<HashMap<ConnKey, Rc<ConnEntry>>>>;

/// Serves until `stop` is set and the drain is over (or its grace ran out).
pub(crate) async fn serve(
    shard: &Rc<Shard>,
    listener: TcpListener,
    connections_max: usize,
    grace: Duration,
    stop: &Arc<AtomicBool>,
) {
    let (stopped_tx, stopped_rx) = local_channel::new_bounded::<()>(1);
    let flag = stop.clone();
    glommio::spawn_local(async move {
        while !flag.load(Ordering::Relaxed) {
            glommio::timer::sleep(STOP_POLL).await;
        }
        let _ = stopped_tx.send(()).await;
    })
    .detach();
    let open: Open = Rc::new(RefCell::new(HashMap::new()));
    accept_loop(shard, &listener, connections_max, &open, stopped_rx).await;
    drop(listener);
    drain(shard, &open, grace).await;
}

/// Accepts connections until stopped, never holding more than `connections_max` open.
async fn accept_loop(
    shard: &Rc<Shard>,
    listener: &TcpListener,
    connections_max: usize,
    open: &Open,
    stopped: LocalReceiver<()>,
) {
    let slots = Rc::new(Semaphore::new(connections_max as u64));
    let mut next_key: ConnKey = 0;
    loop {
        let accepted = futures_lite::future::or(
            async {
                let permit = slots.acquire_static_permit(1).await.ok()?;
                Some((permit, listener.accept().await))
            },
            async {
                stopped.recv().await;
                None
            },
        )
        .await;
        let Some((permit, stream)) = accepted else {
            return;
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        shard.core.borrow_mut().app.counters.connections_accepted += 1;
        next_key += 1;
        let key = next_key;
        let entry = Rc::new(ConnEntry {
            fd: stream.as_raw_fd(),
            idle: Cell::new(true),
        });
        open.borrow_mut().insert(key, entry.clone());
        let (news_tx, news) = local_channel::new_unbounded();
        shard.conns.borrow_mut().insert(key, news_tx);
        let (shard, open) = (shard.clone(), open.clone());
        glommio::spawn_local(async move {
            serve_conn(&shard, key, stream, &entry, &news).await;
            shard.conns.borrow_mut().remove(&key);
            shard.core.borrow_mut().closed(key);
            open.borrow_mut().remove(&key);
            drop(permit);
        })
        .detach();
    }
}

/// Stops the shard gracefully: idle connections are closed at once (their blocked read sees end
/// of stream), busy ones finish their request and close, and after `grace` the shard exits anyway.
async fn drain(shard: &Shard, open: &Open, grace: Duration) {
    shard.core.borrow_mut().stop();
    let deadline = Instant::now() + grace;
    loop {
        for entry in open.borrow().values() {
            if entry.idle.get() {
                // SAFETY: the fd belongs to a live connection (entries are removed when it closes).
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RD) };
            }
        }
        if open.borrow().is_empty() || Instant::now() >= deadline {
            return;
        }
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// Drives one connection until it closes.
async fn serve_conn(
    shard: &Rc<Shard>,
    key: ConnKey,
    mut stream: TcpStream,
    entry: &ConnEntry,
    news: &LocalReceiver<ConnEvent>,
) {
    let _ = stream.set_nodelay(true);
    // The address is asked only when the rate limit needs it.
    let peer = if shard.core.borrow().app.rate_limit.is_some() {
        stream.peer_addr().ok().map(|addr| addr.ip())
    } else {
        None
    };
    let mut conn = Connection::new(peer);
    let mut buf = vec![0u8; READ_BYTES];
    let mut out = Vec::new();
    let mut head_started: Option<Instant> = None;
    loop {
        let timeout = match head_started {
            None => shard.idle_timeout,
            Some(started) => shard
                .head_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1)),
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let n = match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    timed_out(shard);
                }
                return;
            }
        };
        // This transport has no turn clock to reuse, so recording costs it a second clock read.
        let received = Instant::now();
        let step = shard
            .core
            .borrow_mut()
            .input(key, &mut conn, &buf[..n], &mut out, received);
        shard.after();
        let Some((next, resumed)) =
            carry_out(shard, key, &mut conn, &mut stream, &mut out, news, step).await
        else {
            return;
        };
        // One value per input that produced responses (see `latency`): the last are out now.
        if step.answered || resumed {
            shard.record_since(received);
        }
        if next == Next::Close {
            linger(&mut stream, &mut buf).await;
            return;
        }
        let idle = conn.is_idle();
        entry.idle.set(idle);
        // A partial request that began in an input which also answered one gets its own head
        // deadline: the deadline belongs to each request, not to a run of them.
        head_started = match (idle, head_started) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, _) if step.answered => Some(Instant::now()),
            (false, started) => started,
        };
    }
}

/// Carries out a step: writes its output once the core releases it, and while an order waits,
/// resumes the connection with the core's answer. Returns what the connection does next and
/// whether it was resumed, or `None` when it must close at once (output dropped, a write failed,
/// the wait outlived the head timeout).
async fn carry_out(
    shard: &Rc<Shard>,
    key: ConnKey,
    conn: &mut Connection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    news: &LocalReceiver<ConnEvent>,
    step: Step,
) -> Option<(Next, bool)> {
    let deadline = Instant::now() + shard.head_timeout;
    let next_event = |wait: Duration| async move {
        futures_lite::future::or(async { news.recv().await }, async {
            glommio::timer::sleep(wait).await;
            None
        })
        .await
    };
    match carry_out_with(shard, key, conn, stream, out, step, deadline, next_event).await {
        Carried::Next(next, resumed) => Some((next, resumed)),
        Carried::TimedOut => {
            timed_out(shard);
            None
        }
        Carried::Close => None,
    }
}

/// How [`carry_out_with`] ended.
pub(super) enum Carried {
    /// Everything is out: what the connection does next, and whether it was resumed.
    Next(Next, bool),
    /// The wait outlived its deadline: close.
    TimedOut,
    /// Close at once (output dropped, a write failed).
    Close,
}

/// The loop every glommio-socket connection runs after a step (the public port's and the admin
/// listener's): writes the output once released, and while a request waits, takes the core's
/// news from `next_event` (given the time left until `deadline`; `None` when that ran out):
/// [`ConnEvent::Recheck`] asks the core again, [`ConnEvent::Answer`] resumes the connection.
#[allow(clippy::too_many_arguments)] // a connection's parts, each borrowed separately
pub(super) async fn carry_out_with<F, Fut>(
    shard: &Rc<Shard>,
    key: ConnKey,
    conn: &mut Connection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    mut step: Step,
    deadline: Instant,
    mut next_event: F,
) -> Carried
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Option<ConnEvent>>,
{
    let mut release = step.release;
    let mut resumed = false;
    loop {
        match release {
            Release::Drop => return Carried::Close,
            Release::Now if !out.is_empty() => {
                if stream.write_all(out).await.is_err() {
                    return Carried::Close;
                }
                out.clear();
            }
            Release::Now | Release::Held => {}
        }
        let waiting = matches!(step.next, Next::Wait(_));
        if release == Release::Now && !waiting {
            return Carried::Next(step.next, resumed);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match next_event(wait).await {
            None => return Carried::TimedOut,
            Some(ConnEvent::Recheck) => release = shard.core.borrow_mut().release(key),
            Some(ConnEvent::Answer(answer)) => {
                step = shard
                    .core
                    .borrow_mut()
                    .resume(key, conn, answer, out, Instant::now());
                shard.after();
                release = step.release;
                resumed = true;
            }
        }
    }
}

fn timed_out(shard: &Shard) {
    shard.core.borrow_mut().app.counters.connections_timed_out += 1;
}

/// Half-closes and reads what the client still sends, briefly, before the socket is closed.
async fn linger(stream: &mut TcpStream, buf: &mut [u8]) {
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut drained = 0;
    while drained < LINGER_BYTES_MAX {
        match stream.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
