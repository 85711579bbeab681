//! The stock: a shard's [`slice::Slice`] and the pure protocol ([`rebalance`]) that moves tickets
//! between slices. No I/O, no sockets, no journal writes: changes come out as values.

pub mod escrow;
pub mod leased;
pub mod messages;
pub mod rebalance;
pub mod restock;
pub mod slice;
