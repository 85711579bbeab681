//! The shard's provided-buffer ring: the receive buffers the kernel picks from for every
//! multishot recv. A buffer is the kernel's until a CQE names it, ours until the end of the turn
//! that reaped it, then the kernel's again (`recycle`, `publish`).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

/// Receive buffers in the shard's provided-buffer ring (a power of two, as the kernel requires).
/// A buffer is held only from its CQE to the end of that turn, so the ring must cover the receives
/// that complete between two turns: one per client that sent, up to every open connection. When
/// it runs dry a recv ends with ENOBUFS, its data waits in the socket, and it is re-armed at the
/// end of the turn, to compete again at the next: measured with 256 buffers under 1,024 `wrk`
/// connections, 81,249 of 122,159 requests (two in three) went through an ENOBUFS and a re-arm
/// first (`TransportCounters::recv_enobufs`), each a turn later and an SQE and a CQE more (issue
/// 14). 2,048 covers a thousand clients sending at once with room for a second read of some.
const RECV_BUFFERS: u16 = 2048;

/// Bytes per receive buffer: 2 KiB holds a request with its headers, or sixteen pipelined `wrk`
/// requests (about 60 bytes each); a longer input takes more than one buffer (the multishot recv
/// goes on). 2,048 × 2 KiB is 4 MiB per shard, whatever the connection count (the glommio
/// transport holds 4 KiB per open connection).
const RECV_BUFFER_BYTES: usize = 2 * 1024;

/// All receive buffers together.
const RECV_BUFFERS_BYTES: usize = RECV_BUFFERS as usize * RECV_BUFFER_BYTES;

/// The buffer group of our one provided-buffer ring (any id; the ring is ours alone).
pub(super) const BUFFER_GROUP: u16 = 0;

/// The shard's provided-buffer ring: `RECV_BUFFERS` buffers of `RECV_BUFFER_BYTES`, which the
/// kernel hands to multishot recvs.
pub(super) struct RecvBuffers {
    /// The ring of buffer descriptors the kernel reads (mmap'd for page alignment).
    entries: *mut types::BufRingEntry,
    /// The buffers themselves, back to back (`RECV_BUFFERS × RECV_BUFFER_BYTES`, from a boxed
    /// slice freed in `drop`). A raw pointer, because the kernel writes through it.
    memory: *mut u8,
    /// Our producer index: descriptors written so far (published to the kernel by `publish`).
    tail: u16,
}

impl RecvBuffers {
    /// Allocates the buffers and registers them with `ring`, all available.
    pub(super) fn new(ring: &IoUring) -> io::Result<RecvBuffers> {
        let bytes = usize::from(RECV_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; the result is checked before use.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut buffers = RecvBuffers {
            entries: entries.cast(),
            memory: Box::into_raw(vec![0u8; RECV_BUFFERS_BYTES].into_boxed_slice()).cast(),
            tail: 0,
        };
        // SAFETY: the descriptor ring and the buffers live as long as `buffers`, which the
        // driver drops after the ring (field order), so the kernel never sees them freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.entries as u64,
                RECV_BUFFERS,
                BUFFER_GROUP,
                0,
            )?
        };
        for id in 0..RECV_BUFFERS {
            buffers.recycle(id);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// The first `len` bytes of buffer `id`, which a CQE just filled.
    pub(super) fn get(&self, id: u16, len: usize) -> &[u8] {
        assert!(id < RECV_BUFFERS && len <= RECV_BUFFER_BYTES);
        // SAFETY: in bounds (asserted); the kernel is done with buffer `id` (its CQE came) and
        // gets it back only after this borrow ends (`recycle` takes `&mut self`).
        unsafe {
            std::slice::from_raw_parts(self.memory.add(usize::from(id) * RECV_BUFFER_BYTES), len)
        }
    }

    /// Gives buffer `id` back to the kernel (seen at the next `publish`).
    pub(super) fn recycle(&mut self, id: u16) {
        assert!(id < RECV_BUFFERS);
        let index = usize::from(self.tail & (RECV_BUFFERS - 1));
        // SAFETY: `index` < RECV_BUFFERS, the number of descriptors mapped; the kernel does not
        // read descriptors past the published tail.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.memory as u64 + u64::from(id) * RECV_BUFFER_BYTES as u64);
        entry.set_len(RECV_BUFFER_BYTES as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every recycled buffer visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: the tail lives inside the mapped descriptor ring; the kernel reads it atomically.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for RecvBuffers {
    fn drop(&mut self) {
        let bytes = usize::from(RECV_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: unmaps what `new` mapped and frees what it boxed; the ring that used them is
        // gone (dropped first).
        unsafe {
            libc::munmap(self.entries.cast(), bytes);
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.memory,
                RECV_BUFFERS_BYTES,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_ring_is_a_power_of_two_of_whole_buffers() {
        assert!(RECV_BUFFERS.is_power_of_two() && RECV_BUFFERS <= 32_768);
        assert_eq!(RECV_BUFFERS_BYTES % 4096, 0);
    }
}
