//! The admin listener's transport (`--admin-listen`): glommio's `TcpStream` on the coordinator
//! (shard 0), one task per connection, like [`super::sockets`], whatever transport the public
//! port uses. Its connections are [`Connection::admin`] ones, so their requests go to the admin
//! routes (`app/admin.rs`) and nothing else; the public port's never do.
//!
//! A request that waits (a restock, sales closed or opened: an operation of the coordinator's
//! queue) gets its answer from [`ShardCore::take_admin_answer`], and held output leaves when
//! [`ShardCore::release`] says so: the task asks every [`ADMIN_POLL`] instead of taking
//! [`crate::shard::ConnEvent`]s, which belong to the public transport. Operator requests are
//! rare, so the polling costs nothing that matters, and the public transport's event path is
//! untouched.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::{TcpListener, TcpStream};

use super::connection::{Connection, Next};
use super::sockets::{self, Carried};
use crate::app::admin::Admin;
use crate::shard::core::ADMIN_KEYS;
use crate::shard::{ConnEvent, ConnKey, Shard, Step};

/// Bytes read from a socket at once: admin requests are small.
const READ_BYTES: usize = 4 * 1024;

/// How often a waiting admin request asks the core for its answer or its release: a restock
/// takes a round trip to every shard and a group commit, a few milliseconds.
const ADMIN_POLL: Duration = Duration::from_millis(2);

/// The longest an admin request may wait for its answer: far beyond a round trip and a commit,
/// so only a shard that stopped answering (a shutdown) reaches it; the connection is then closed.
const ADMIN_WAIT_MAX: Duration = Duration::from_secs(10);

/// Admin connections open at once: an operator's tool or two; more wait in the backlog.
const ADMIN_CONNECTIONS_MAX: usize = 16;

/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Serves the admin listener until `stop` is set. Runs on the coordinator's executor.
pub(crate) async fn serve(
    shard: Rc<Shard>,
    listener: TcpListener,
    admin: &'static Admin,
    stop: Arc<AtomicBool>,
) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    let mut next_key: ConnKey = ADMIN_KEYS;
    while !stop.load(Ordering::Relaxed) {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            glommio::timer::sleep(STOP_POLL).await;
            None
        })
        .await;
        let Some(stream) = accepted else {
            continue;
        };
        let Ok(stream) = stream else {
            continue;
        };
        if open.get() >= ADMIN_CONNECTIONS_MAX {
            continue; // dropped: closed at once
        }
        next_key += 1;
        let (key, shard, open) = (next_key, shard.clone(), open.clone());
        open.set(open.get() + 1);
        shard.core.borrow_mut().app.counters.connections_accepted += 1;
        glommio::spawn_local(async move {
            serve_conn(&shard, key, stream, admin).await;
            shard.core.borrow_mut().closed(key);
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Drives one admin connection until it closes.
async fn serve_conn(shard: &Rc<Shard>, key: ConnKey, mut stream: TcpStream, admin: &'static Admin) {
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::admin(admin);
    let mut buf = vec![0u8; READ_BYTES];
    let mut out = Vec::new();
    loop {
        let _ = stream.set_read_timeout(Some(shard.idle_timeout));
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let step =
            shard
                .core
                .borrow_mut()
                .input(key, &mut conn, &buf[..n], &mut out, Instant::now());
        shard.after();
        match carry_out(shard, key, &mut conn, &mut stream, &mut out, step).await {
            Some(Next::Close) | None => return,
            Some(_) => {}
        }
    }
}

/// Writes a step's output once released, and while a request waits, resumes the connection with
/// its answer (the loop of [`sockets::carry_out_with`], asking the core every [`ADMIN_POLL`]).
/// `None`: close at once (output dropped, a write failed, the wait ran too long).
async fn carry_out(
    shard: &Rc<Shard>,
    key: ConnKey,
    conn: &mut Connection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    step: Step,
) -> Option<Next> {
    let deadline = Instant::now() + ADMIN_WAIT_MAX;
    let next_event = |wait: Duration| async move {
        if wait.is_zero() {
            return None;
        }
        glommio::timer::sleep(ADMIN_POLL.min(wait)).await;
        let answer = shard.core.borrow_mut().take_admin_answer(key);
        Some(answer.map_or(ConnEvent::Recheck, ConnEvent::Answer))
    };
    match sockets::carry_out_with(shard, key, conn, stream, out, step, deadline, next_event).await {
        Carried::Next(next, _) => Some(next),
        Carried::TimedOut | Carried::Close => None,
    }
}
