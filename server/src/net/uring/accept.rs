//! Accepting: the multishot accept armed or cancelled so that open plus waiting connections
//! stay within `connections_max`, accepted sockets admitted to a slot.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

use super::connections::State;
use super::slots::{close, Phase, Slot};
use super::{token, Op, SWEEP_PERIOD};
use crate::net::connection::Connection;

/// After an accept error that ended the multishot accept (EMFILE, ENFILE, ENOMEM), accepting
/// resumes after this long, so a full descriptor table does not spin the shard.
const ACCEPT_PAUSE: Duration = SWEEP_PERIOD;

impl State {
    pub(super) fn on_accept(&mut self, res: i32, flags: u32, now: Instant) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res >= 0 {
            if self.draining {
                close(res); // as a connection still in the backlog when the listener closes
            } else {
                self.waiting.push_back(res);
            }
        } else if res != -libc::ECANCELED {
            tracing::debug!(error = %io::Error::from_raw_os_error(-res), "accept failed");
            if !cqueue::more(flags) && !retry_at_once(-res) {
                self.accept_paused_until = now + ACCEPT_PAUSE;
            }
        }
    }

    /// Admits waiting sockets up to the limit, and arms or cancels the accept so that open plus
    /// waiting stays at most `connections_max`; closes the listener once draining.
    pub(super) fn control_accept(&mut self, now: Instant) {
        while self.open < self.connections_max {
            let Some(fd) = self.waiting.pop_front() else {
                break;
            };
            self.admit(fd, now);
        }
        let Some(listener) = &self.listener else {
            return;
        };
        let want = !self.draining
            && self.open + self.waiting.len() < self.connections_max
            && now >= self.accept_paused_until;
        if want && !self.accept_armed {
            let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(token(Op::Accept, 0, 0));
            self.staged.push(accept);
            self.accept_armed = true;
            self.accept_cancelled = false;
        } else if !want && self.accept_armed && !self.accept_cancelled {
            let cancel = opcode::AsyncCancel::new(token(Op::Accept, 0, 0))
                .build()
                .user_data(token(Op::Cancel, 0, 0));
            self.staged.push(cancel);
            self.accept_cancelled = true;
        }
        if self.draining && !self.accept_armed {
            self.listener = None; // closes it: the backlog is reset, as the glommio transport does
        }
    }

    /// Gives an accepted socket a slot.
    fn admit(&mut self, fd: RawFd, now: Instant) {
        self.shard
            .core
            .borrow_mut()
            .app
            .counters
            .connections_accepted += 1;
        self.set_nodelay(fd);
        // The address is asked only when the rate limit needs it: one syscall per connection.
        let peer = if self.shard.core.borrow().app.rate_limit.is_some() {
            peer_ip(fd)
        } else {
            None
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::free(now));
                u32::try_from(self.slots.len() - 1).expect("connections_max fits in u32")
            }
        };
        let slot = &mut self.slots[index as usize];
        assert!(slot.phase == Phase::Free && !slot.recv_armed && !slot.sending && !slot.touched);
        slot.fd = fd;
        slot.conn = Connection::new(peer);
        slot.phase = Phase::Open;
        slot.peer_closed = false;
        slot.recv_ended = false;
        slot.read_shut = false;
        slot.in_request = false;
        slot.deadline = now + self.shard.idle_timeout;
        self.open += 1;
        assert!(self.open <= self.connections_max);
        self.touch(index);
    }

    /// TCP_NODELAY: replies are whole, so Nagle would only delay them. Linux copies the option
    /// from the listener to accepted sockets; that is checked on the first one, and if not, every
    /// socket gets its own setsockopt.
    fn set_nodelay(&mut self, fd: RawFd) {
        let inherited = *self.nodelay_inherited.get_or_insert_with(|| {
            let mut on: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes an int into `on`, of the size given.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&mut on as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            rc == 0 && on != 0
        });
        if !inherited {
            let on: libc::c_int = 1;
            // SAFETY: setsockopt reads an int from `on`, of the size given.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
}

/// Whether an accept error concerns only the connection it would have returned, so the accept
/// is armed again at the end of the turn instead of after `ACCEPT_PAUSE`: accept(2) says to
/// treat the network errors of a pending connection like EAGAIN, and a client that reset before
/// it was accepted (ECONNABORTED) says nothing of the next. A pause there made every connection
/// that came meanwhile wait up to a sweep period for its first byte to be read.
fn retry_at_once(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNABORTED
            | libc::EINTR
            | libc::EAGAIN
            | libc::EPERM
            | libc::ETIMEDOUT
            | libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENONET
            | libc::EOPNOTSUPP
    )
}

/// The address of the peer of socket `fd` (getpeername), if it is an IP socket.
fn peer_ip(fd: RawFd) -> Option<IpAddr> {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed; getpeername writes at most
    // `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_shortage_of_resources_pauses_the_accept() {
        // A full descriptor table or no memory: accepting again at once would spin the shard.
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert!(!retry_at_once(errno), "errno {errno}");
        }
        // One connection's trouble: the next connection must not wait for the sweep.
        for errno in [
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::EPERM,
            libc::ENETUNREACH,
        ] {
            assert!(retry_at_once(errno), "errno {errno}");
        }
    }
}
