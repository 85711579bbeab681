//! One shard's slice of the ticket stock.
//!
//! Invariant (checked after every change): `allotted + added + received == available + sold +
//! sent`. The
//! slice is a plain value owned by one executor: no locks, no atomics. Selling from it is a
//! subtraction; moving tickets between slices is an explicit message (see `shard`).

/// How the initial stock is cut: slice `i` of `n` gets `stock / n`, and the first `stock % n`
/// slices one more, so the slices add up to `stock` exactly.
pub fn allotment(stock: u64, shards: usize, shard: usize) -> u64 {
    assert!(shard < shards, "shard {shard} of {shards}");
    let n = shards as u64;
    stock / n + u64::from((shard as u64) < stock % n)
}

/// The outcome of an order against a slice. Not enough stock is a value, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sale {
    /// The tickets were taken.
    Sold,
    /// The slice holds fewer than asked; nothing was taken.
    Insufficient,
    /// Not tried: an operator had closed sales when the coordinator came to decide the order
    /// (it was escalated before its shard heard of the close); answered 409 `sales_closed`.
    Closed,
    /// Not decided: a cluster node's ledger did not settle it in time (etcd unreachable, a
    /// round waiting on a silent node); nothing was taken; answered 503 `cluster_unavailable`.
    Unavailable,
}

/// A shard's tickets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Tickets this slice started with.
    allotted: u64,
    /// Tickets this slice may sell now, without asking anyone.
    available: u64,
    /// Tickets sold from this slice (purchases and reserves).
    sold: u64,
    /// Tickets received from other slices.
    received: u64,
    /// Tickets given to other slices.
    sent: u64,
    /// Tickets an operator added to this slice (restocks, at the coordinator).
    added: u64,
}

impl Slice {
    /// A slice holding `allotted` tickets.
    pub fn new(allotted: u64) -> Self {
        Slice {
            allotted,
            available: allotted,
            sold: 0,
            received: 0,
            sent: 0,
            added: 0,
        }
    }

    /// Tickets this slice can sell now.
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Tickets sold from this slice.
    pub fn sold(&self) -> u64 {
        self.sold
    }

    /// Takes `qty` tickets if the slice holds them.
    pub fn take(&mut self, qty: u64) -> Sale {
        if qty > self.available {
            return Sale::Insufficient;
        }
        self.available -= qty;
        self.sold += qty;
        self.check();
        Sale::Sold
    }

    /// Removes `qty` tickets to send to another slice; the caller must deliver them.
    pub fn give(&mut self, qty: u64) -> u64 {
        let qty = qty.min(self.available);
        self.available -= qty;
        self.sent += qty;
        self.check();
        qty
    }

    /// Adds `qty` tickets that another slice gave.
    pub fn receive(&mut self, qty: u64) {
        self.available += qty;
        self.received += qty;
        self.check();
    }

    /// Adds `qty` new tickets (a restock): the only way tickets come into being after start.
    pub fn add(&mut self, qty: u64) {
        self.available += qty;
        self.added += qty;
        self.check();
    }

    /// Tickets an operator added to this slice.
    pub fn added(&self) -> u64 {
        self.added
    }

    fn check(&self) {
        // Pair assertion: nothing is created or destroyed by any operation but `add`.
        assert_eq!(
            self.allotted + self.added + self.received,
            self.available + self.sold + self.sent,
            "slice conservation broken: {self:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allotments_add_up_for_any_shard_count() {
        for stock in [0u64, 1, 2, 7, 1000, 1_000_000_007] {
            for shards in 1..=17 {
                let total: u64 = (0..shards).map(|s| allotment(stock, shards, s)).sum();
                assert_eq!(total, stock, "stock {stock} shards {shards}");
            }
        }
    }

    #[test]
    fn take_give_receive_conserve() {
        let mut a = Slice::new(10);
        let mut b = Slice::new(0);
        assert_eq!(a.take(11), Sale::Insufficient);
        assert_eq!(a.available(), 10);
        assert_eq!(a.take(4), Sale::Sold);
        let moved = a.give(100);
        assert_eq!(moved, 6);
        b.receive(moved);
        assert_eq!(b.take(6), Sale::Sold);
        assert_eq!(b.take(1), Sale::Insufficient);
        assert_eq!(a.sold() + b.sold(), 10);
    }
}
