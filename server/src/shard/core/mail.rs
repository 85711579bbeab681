//! The shard's mail: messages to peers, queued in posting order, each let out only once what
//! its sender journaled before it is durable (see the invariants in the parent module's doc).

use super::{Message, ShardCore};

impl ShardCore {
    /// Queues a message for `to` behind everything posted before it.
    pub(super) fn post(&mut self, to: usize, message: Message) {
        let after = match &self.journal {
            Some(journal) if message.must_be_durable() => Some(journal.appended()),
            _ => None,
        };
        self.mail.push_back((to, message, after));
    }

    /// The next message that may leave now, in posting order; `None` when there is none or the
    /// first waits for the journal. Report it delivered with [`ShardCore::mail_sent`].
    pub fn next_mail(&mut self) -> Option<(usize, Message)> {
        loop {
            let &(to, message, after) = self.mail.front()?;
            if let (Some(seq), Some(journal)) = (after, &self.journal) {
                if journal.failed().is_some() {
                    // Its `Give` may not be on disk: sending it could make tickets exist twice.
                    tracing::warn!(to, ?message, "a message was not sent: the journal failed");
                    self.mail.pop_front();
                    if let Message::Stock(msg) = message {
                        self.tickets_dropped += msg.tickets();
                    }
                    continue;
                }
                if journal.durable() < seq {
                    return None;
                }
            }
            self.mail.pop_front();
            self.mail_sending += 1;
            return Some((to, message));
        }
    }

    /// A message taken with [`ShardCore::next_mail`] is with its peer's queue (or was lost with
    /// a peer that is gone).
    pub fn mail_sent(&mut self) {
        self.mail_sending -= 1;
    }

    /// Mail is waiting (maybe for the journal).
    pub fn has_mail(&self) -> bool {
        !self.mail.is_empty()
    }

    /// Mail may leave now: its first message waits for nothing the journal does not hold yet
    /// (or the journal failed, and [`ShardCore::next_mail`] drops what it cannot send).
    pub fn mail_ready(&self) -> bool {
        match (self.mail.front(), &self.journal) {
            (None, _) => false,
            (Some(&(_, _, Some(seq))), Some(journal)) => {
                journal.failed().is_some() || journal.durable() >= seq
            }
            (Some(_), _) => true,
        }
    }

    /// Tickets in mail not yet let out.
    pub fn tickets_in_mail(&self) -> u64 {
        self.mail
            .iter()
            .map(|(_, message, _)| match message {
                Message::Stock(msg) => msg.tickets(),
                _ => 0,
            })
            .sum()
    }

    /// Tickets in mail dropped after the journal failed.
    pub fn tickets_dropped(&self) -> u64 {
        self.tickets_dropped
    }
}
