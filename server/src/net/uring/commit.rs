//! Group commits through the ring: the journal's append batches written with O_DSYNC by the
//! driver itself, so that their completions come in the same loop as the sockets'.

use std::io;
use std::time::Instant;

use io_uring::{opcode, types};

use super::connections::{JournalWrite, State};
use super::{token, Op};
use crate::durability::aligned::AlignedBuf;
use crate::durability::journal::{self, BatchKind};

impl State {
    /// Starts the next group commit through this ring, when the core hands one out (`idle`: the
    /// shard has nothing else to do; else only an overdue one): the disk write's completion then
    /// comes in the same loop as the sockets', with no wait for glommio's scheduler (which,
    /// measured under load, tripled a commit's latency). A compaction goes to the journal task
    /// (it renames and syncs files through glommio).
    pub(super) fn start_journal_write(&mut self, now: Instant, idle: bool) {
        if !self.shard.driver_writes.get() || self.journal_write.is_some() {
            return;
        }
        let Some(batch) = self.shard.core.borrow_mut().next_batch(now, idle) else {
            return;
        };
        if batch.kind == BatchKind::Compact {
            *self.shard.compaction.borrow_mut() = Some(batch);
            self.shard.kick_journal();
            return;
        }
        let file = self
            .shard
            .journal_file
            .as_ref()
            .expect("a batch needs a file");
        let fd = file
            .fd
            .get()
            .expect("the driver writes only to a disk file");
        let buf = AlignedBuf::copy_of(&batch.bytes, self.spare.take());
        self.journal_write = Some(JournalWrite {
            batch,
            buf,
            done: 0,
            fd,
        });
        self.stage_journal();
    }

    /// Stages the rest of the journal write in flight.
    fn stage_journal(&mut self) {
        let write = self.journal_write.as_ref().expect("a journal write");
        let rest = &write.buf.bytes()[write.done..];
        let len = u32::try_from(rest.len()).expect("a batch is at most 64 KiB");
        let sqe = opcode::Write::new(types::Fd(write.fd), rest.as_ptr(), len)
            .offset(write.batch.offset + write.done as u64)
            .build()
            .user_data(token(Op::Journal, 0, 0));
        self.staged.push(sqe);
    }

    /// The journal write completed with `res` (bytes written, or -errno): continue a short
    /// write, or tell the core the batch is durable (O_DSYNC) or the journal failed.
    pub(super) fn on_journal_write(&mut self, res: i32, now: Instant) {
        let write = self
            .journal_write
            .as_mut()
            .expect("a journal write was in flight");
        let at = write.batch.offset + write.done as u64;
        let written = if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        };
        let path = self
            .shard
            .journal_file
            .as_ref()
            .expect("a file")
            .path
            .borrow()
            .clone();
        match journal::continue_write(&path, at, write.done, written) {
            Err(error) => {
                self.journal_write = None;
                self.shard.core.borrow_mut().write_failed(error);
            }
            Ok(done) if done < write.buf.bytes().len() => {
                write.done = done;
                self.stage_journal();
            }
            Ok(_) => {
                let write = self.journal_write.take().expect("checked above");
                self.shard.core.borrow_mut().write_done(&write.batch, now);
                self.spare = Some(write.buf);
            }
        }
    }

    /// Group commits complete through glommio's reactor (a compaction in the journal task, or
    /// every commit once the journal task writes them): held responses then need the driver to
    /// give way often.
    pub(super) fn commits_via_glommio(&self) -> bool {
        self.journal_write.is_none() && self.shard.core.borrow().write_out()
    }
}
