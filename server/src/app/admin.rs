//! The admin listener's routes (`--admin-listen`, served by the coordinator only, with the
//! glommio socket transport): restock, sales closed or opened, the stock per shard, the
//! journal's state. Every request needs `Authorization: Bearer <token>` (`ADMIN_TOKEN_FILE`),
//! compared in constant time; a missing or wrong one gets the same 401, which says nothing more.
//! The public listener never gets here: its route table has no `/admin/...` path (404).
//!
//! Off the hot path: `write!` is fine here.

use std::io::Write as _;

use proto_http::{Method, RequestHead};

use crate::app::routes::{error, json, App, Deferred, Exchange, Reply, Route};
use crate::stock::rebalance::{Operated, COORDINATOR};
use crate::stock::restock::parse_add;

/// The longest token accepted from the token file: a bearer token is a secret of a few dozen
/// characters; anything much longer is the wrong file.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The shortest token accepted: 16 characters, so a guessed or empty token cannot open it.
pub const TOKEN_BYTES_MIN: usize = 16;

/// What the admin listener knows, made once at start-up (and leaked: the process keeps it).
#[derive(Debug)]
pub struct Admin {
    /// The bearer token, as read from the token file (trimmed).
    token: Box<[u8]>,
    /// The total stock (sold or not) when this process started: the journal's, with every
    /// earlier restock.
    pub stock_at_start: u64,
    /// Tickets sold before this process started.
    pub sold_at_start: u64,
    /// The journal's files, one per shard, as this process writes them (empty without one).
    pub journal_files: Vec<String>,
    /// The journal's epoch (one per start; 0 without a journal).
    pub journal_epoch: u64,
}

/// Why a token file cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Shorter than [`TOKEN_BYTES_MIN`] once trimmed.
    TooShort,
    /// Longer than [`TOKEN_BYTES_MAX`].
    TooLong,
    /// A byte that is not visible ASCII (a header value could not carry it).
    NotVisibleAscii,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::TooShort => write!(f, "shorter than {TOKEN_BYTES_MIN} characters"),
            TokenError::TooLong => write!(f, "longer than {TOKEN_BYTES_MAX} bytes"),
            TokenError::NotVisibleAscii => write!(f, "not visible ASCII (0x21 to 0x7e)"),
        }
    }
}

impl Admin {
    /// The admin state for a token file's contents (surrounding whitespace, such as the final
    /// newline, trimmed).
    pub fn new(file: &[u8], stock_at_start: u64, sold_at_start: u64) -> Result<Admin, TokenError> {
        let token = file.trim_ascii();
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::TooLong);
        }
        if token.len() < TOKEN_BYTES_MIN {
            return Err(TokenError::TooShort);
        }
        if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(TokenError::NotVisibleAscii);
        }
        Ok(Admin {
            token: token.into(),
            stock_at_start,
            sold_at_start,
            journal_files: Vec::new(),
            journal_epoch: 0,
        })
    }

    /// Whether an `Authorization` value is `Bearer <our token>`. The comparison reads every
    /// byte of both whatever they hold, so its time tells nothing of how much matched (only the
    /// length of what the client sent, which it knows).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return false;
        };
        let mut differ = u8::from(presented.len() != self.token.len());
        for (i, &b) in presented.iter().enumerate() {
            // Past our token's end, compare with a byte that never matches a visible one.
            let ours = self.token.get(i).copied().unwrap_or(0);
            differ |= b ^ ours;
        }
        std::hint::black_box(differ) == 0
    }
}

/// The admin routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdminRoute {
    /// `POST /admin/restock` `{"add": n}`
    Restock,
    /// `POST /admin/sales/close`
    Close,
    /// `POST /admin/sales/open`
    Open,
    /// `GET /admin/stock`
    Stock,
    /// `GET /admin/journal`
    Journal,
}

impl AdminRoute {
    fn find(path: &[u8]) -> Option<AdminRoute> {
        Some(match path {
            b"/admin/restock" => AdminRoute::Restock,
            b"/admin/sales/close" => AdminRoute::Close,
            b"/admin/sales/open" => AdminRoute::Open,
            b"/admin/stock" => AdminRoute::Stock,
            b"/admin/journal" => AdminRoute::Journal,
            _ => return None,
        })
    }

    /// Whether the route answers `method`, and its `Allow` value.
    fn allows(self, method: Method<'_>) -> (bool, &'static [u8]) {
        match self {
            AdminRoute::Restock | AdminRoute::Close | AdminRoute::Open => {
                (method == Method::Post, b"POST")
            }
            AdminRoute::Stock | AdminRoute::Journal => {
                (matches!(method, Method::Get | Method::Head), b"GET, HEAD")
            }
        }
    }
}

impl App {
    /// Answers one request on the admin listener (the coordinator's).
    pub fn handle_admin(
        &mut self,
        admin: &Admin,
        req: &RequestHead<'_, '_>,
        body: &[u8],
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        self.counters.requests += 1;
        if !admin.accepts(req.header(b"authorization")) {
            self.counters.admin_unauthorized += 1;
            return error(out, x, 401, "unauthorized", "unauthorized", None);
        }
        let Some(route) = AdminRoute::find(req.path()) else {
            self.counters.not_found += 1;
            return error(out, x, 404, "not_found", "no such admin route", None);
        };
        let (allowed, allow) = route.allows(req.method);
        if !allowed {
            self.counters.method_not_allowed += 1;
            let detail = "method not allowed on this endpoint";
            return error(out, x, 405, "method_not_allowed", detail, Some(allow));
        }
        assert_eq!(
            self.shard, COORDINATOR,
            "the admin listener runs on the coordinator"
        );
        let op = match route {
            AdminRoute::Stock => return self.admin_stock(admin, x, out),
            AdminRoute::Journal => return self.admin_journal(admin, x, out),
            AdminRoute::Restock if self.node.escrow().is_some() => {
                // A cluster node's stock is its lease: tickets added here would be in no ledger.
                self.counters.body_errors += 1;
                let detail = "a cluster node's stock is leased from the sale's ledger in etcd, \
                              whose capacity `ticketd cluster init` set; it is not restocked here";
                return error(out, x, 409, "cluster_node", detail, None);
            }
            AdminRoute::Restock => {
                let node = &self.node;
                let capacity =
                    admin.stock_at_start + node.slice().added() + node.restocks_pending();
                match parse_add(body, capacity) {
                    Ok(add) => Operated::Restocked { add, epoch: 0 },
                    Err(e) => {
                        self.counters.body_errors += 1;
                        return error(out, x, e.status(), e.code(), e.detail(), None);
                    }
                }
            }
            AdminRoute::Close => Operated::Sales { closed: true },
            AdminRoute::Open => Operated::Sales { closed: false },
        };
        if self.halted || self.forwarding.is_some() {
            let detail =
                "this server cannot change its stock: its journal failed, or it holds none";
            return error(out, x, 503, "stock_unavailable", detail, None);
        }
        let order = self.node.operate(op, &mut self.outbox);
        Reply::Deferred(Deferred::new(order, Route::Admin, 0, x))
    }

    /// The answer to an operator's operation, once every shard applied it and its record is
    /// durable.
    pub(super) fn operated_reply(&self, op: Operated, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        json(out, x, 200, |o| match op {
            Operated::Restocked { add, epoch } => {
                let _ = write!(o, "{{\"added\":{add},\"epoch\":{epoch}}}");
            }
            Operated::Sales { closed } => {
                let sales = if closed { "closed" } else { "open" };
                let _ = write!(o, "{{\"sales\":\"{sales}\"}}");
            }
        })
    }

    /// `GET /admin/stock`: the coordinator's numbers now, every other shard's as last published
    /// (at most 100 ms old, as `/metrics`). A cluster node's stock is its own: what it sold and
    /// holds. Its lease's placements enter the slice as additions, but some go back to the
    /// ledger when the lease collects them: they are neither an operator's additions nor stock
    /// the node has.
    fn admin_stock(&mut self, admin: &Admin, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        self.board.read(&mut self.scraped);
        let node = &self.node;
        let leased = node.escrow().is_some();
        let added = if leased { 0 } else { node.slice().added() };
        let mut rows = Vec::with_capacity(self.shards);
        for shard in 0..self.shards {
            let (available, sold, bound) = if shard == self.shard {
                (node.slice().available(), node.slice().sold(), node.bound())
            } else {
                let stock = self.scraped.get(shard).map(|p| p.snapshot.stock);
                stock.map_or((0, 0, None), |s| (s.available, s.sold, s.bound))
            };
            rows.push((available, sold, bound));
        }
        let available: u64 = rows.iter().map(|r| r.0).sum();
        let sold = admin.sold_at_start + rows.iter().map(|r| r.1).sum::<u64>();
        let stock = if leased {
            sold + available
        } else {
            admin.stock_at_start + added
        };
        let sales = if node.sales_closed() {
            "closed"
        } else {
            "open"
        };
        json(out, x, 200, |o| {
            let _ = write!(
                o,
                "{{\"stock\":{stock},\"added\":{added},\"sold\":{sold},\"available\":{available},\
                 \"epoch\":{},\"sales\":\"{sales}\",\"shards\":[",
                node.epoch()
            );
            for (shard, (available, sold, bound)) in rows.iter().enumerate() {
                let comma = if shard > 0 { "," } else { "" };
                let _ = write!(
                    o,
                    "{comma}{{\"shard\":{shard},\"available\":{available},\"sold\":{sold},\
                     \"bound\":"
                );
                match bound {
                    Some(b) => {
                        let _ = write!(o, "{b}}}");
                    }
                    None => o.extend_from_slice(b"null}"),
                }
            }
            o.extend_from_slice(b"]}");
        })
    }

    /// `GET /admin/journal`: the journal's epoch and files, and each shard's sequence numbers
    /// and commits as last published (the coordinator's too: at most 100 ms old).
    fn admin_journal(&mut self, admin: &Admin, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        self.board.read(&mut self.scraped);
        let scraped = &self.scraped;
        json(out, x, 200, |o| {
            let on = !admin.journal_files.is_empty();
            let _ = write!(
                o,
                "{{\"journal\":{on},\"epoch\":{},\"shards\":[",
                admin.journal_epoch
            );
            for (shard, file) in admin.journal_files.iter().enumerate() {
                let comma = if shard > 0 { "," } else { "" };
                let _ = write!(o, "{comma}{{\"shard\":{shard},\"file\":\"{file}\"");
                match scraped.get(shard).and_then(|p| p.snapshot.journal.as_ref()) {
                    Some(j) => {
                        let _ = write!(
                            o,
                            ",\"appended_seq\":{},\"durable_seq\":{},\"durable_bytes\":{},\
                             \"commits\":{},\"records\":{},\"failed\":{}}}",
                            j.appended, j.durable, j.durable_bytes, j.commits, j.changes, j.failed
                        );
                    }
                    None => o.extend_from_slice(b"}"),
                }
            }
            o.extend_from_slice(b"]}");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_and_compared_strictly() {
        let admin = Admin::new(b"  0123456789abcdef\n", 0, 0).expect("a good token");
        assert!(admin.accepts(Some(b"Bearer 0123456789abcdef")));
        for wrong in [
            &b"Bearer 0123456789abcdeF"[..],
            b"Bearer 0123456789abcde",
            b"Bearer 0123456789abcdef0",
            b"Bearer ",
            b"Basic 0123456789abcdef",
            b"0123456789abcdef",
        ] {
            assert!(
                !admin.accepts(Some(wrong)),
                "{}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!admin.accepts(None));
        assert_eq!(
            Admin::new(b"short\n", 0, 0).err(),
            Some(TokenError::TooShort)
        );
        assert_eq!(
            Admin::new(b"0123456789 abcdef", 0, 0).err(),
            Some(TokenError::NotVisibleAscii)
        );
        assert_eq!(
            Admin::new(&[b'a'; TOKEN_BYTES_MAX + 1], 0, 0).err(),
            Some(TokenError::TooLong)
        );
    }
}
