//! A FIFO bounded by bytes, for sinks that hand events to a thread of their own (OTLP export,
//! the history recorder): the pipeline pushes and never waits; what does not fit is dropped
//! and reported, so that the sink can count it lost.
//!
//! An item's charge stays on the queue after it is taken, until the consumer releases it:
//! the bound covers what is queued and what is being sent or written, which is what the
//! memory holds. Not synchronised: the sinks keep it under their own mutex, beside what they
//! wait on.

use std::collections::VecDeque;

/// Why [`ByteQueue::push`] did not queue an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The first drop since the last accepted push: the start of a burst, the moment to log.
    pub first_in_burst: bool,
    /// Items dropped since the queue was made, this one included.
    pub total: u64,
}

#[derive(Debug)]
pub struct ByteQueue<T> {
    items: VecDeque<T>,
    /// Charges of the queued items and of those taken but not released.
    charged: u64,
    capacity: u64,
    dropped: u64,
    dropping: bool,
}

impl<T> ByteQueue<T> {
    /// A queue that holds at most `capacity` bytes of charges.
    pub fn new(capacity: u64) -> Self {
        Self {
            items: VecDeque::new(),
            charged: 0,
            capacity,
            dropped: 0,
            dropping: false,
        }
    }

    /// Queues `item`, charged `bytes`, if the charge fits; returns the queue's length.
    pub fn push(&mut self, item: T, bytes: u64) -> Result<usize, Dropped> {
        if self.charged.saturating_add(bytes) > self.capacity {
            self.dropped += 1;
            let first_in_burst = !std::mem::replace(&mut self.dropping, true);
            return Err(Dropped {
                first_in_burst,
                total: self.dropped,
            });
        }
        self.dropping = false;
        self.charged += bytes;
        self.items.push_back(item);
        Ok(self.items.len())
    }

    /// Takes up to `max` items, oldest first; their charges stay until [`Self::release`].
    pub fn take(&mut self, max: usize) -> Vec<T> {
        let n = self.items.len().min(max);
        self.items.drain(..n).collect()
    }

    /// The consumer is done with taken items charged `bytes` in all.
    pub fn release(&mut self, bytes: u64) {
        self.charged = self.charged.saturating_sub(bytes);
    }

    /// Empties the queue and forgets every charge (shutdown); returns how many items were
    /// still queued.
    pub fn clear(&mut self) -> usize {
        let left = self.items.len();
        self.items.clear();
        self.charged = 0;
        left
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes charged now: queued items and those taken but not released.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Items dropped since the queue was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_its_capacity_in_bytes_and_reports_drops() {
        let mut q = ByteQueue::new(100);
        assert_eq!(q.push("a", 60), Ok(1));
        assert_eq!(q.push("b", 40), Ok(2));
        assert_eq!(q.charged(), 100);
        assert_eq!(
            q.push("c", 1),
            Err(Dropped {
                first_in_burst: true,
                total: 1
            })
        );
        assert_eq!(
            q.push("d", 1),
            Err(Dropped {
                first_in_burst: false,
                total: 2
            })
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 2);
    }

    #[test]
    fn taken_items_stay_charged_until_released() {
        let mut q = ByteQueue::new(100);
        q.push(1, 50).unwrap();
        q.push(2, 50).unwrap();
        assert_eq!(q.take(1), vec![1]);
        assert_eq!(q.len(), 1);
        // The taken item is in flight: its bytes still count.
        assert!(q.push(3, 10).is_err());
        q.release(50);
        assert_eq!(q.charged(), 50);
        assert_eq!(q.push(3, 10), Ok(2));
        assert_eq!(q.take(10), vec![2, 3]);
        assert!(q.is_empty());
        assert_eq!(q.charged(), 60);
    }

    #[test]
    fn a_burst_of_drops_ends_with_an_accepted_push() {
        let mut q = ByteQueue::new(10);
        q.push((), 10).unwrap();
        assert!(q.push((), 1).unwrap_err().first_in_burst);
        q.take(1);
        q.release(10);
        q.push((), 5).unwrap();
        let d = q.push((), 6).unwrap_err();
        assert_eq!(
            d,
            Dropped {
                first_in_burst: true,
                total: 2
            }
        );
    }

    #[test]
    fn an_item_larger_than_the_capacity_is_dropped_not_queued() {
        let mut q = ByteQueue::new(10);
        assert!(q.push("big", 11).is_err());
        assert!(q.push("huge", u64::MAX).is_err());
        assert!(q.is_empty());
        assert_eq!(q.charged(), 0);
    }

    #[test]
    fn clear_forgets_everything_and_says_how_many_were_left() {
        let mut q = ByteQueue::new(100);
        q.push(1, 30).unwrap();
        q.push(2, 30).unwrap();
        q.take(1);
        assert_eq!(q.clear(), 1);
        assert_eq!(q.charged(), 0);
        // Releasing a charge that clear() already forgot does not underflow.
        q.release(30);
        assert_eq!(q.charged(), 0);
    }
}
