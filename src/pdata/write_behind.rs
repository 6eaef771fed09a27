//! Write-behind: a [`BlockDevice`] whose writes are carried out, in order,
//! by a thread of their own, so that a writer producing blocks (thin_restore's
//! tree builder) does not wait for each `write()` into the page cache.
//!
//! Order and durability are those of the wrapped device: runs are written in
//! the order given; `sync`, and any read, first wait until every queued run
//! has been written, so "flush everything, sync, then the superblock" still
//! holds. The first write error is kept and returned by the next write,
//! read or sync (a writer always ends with a sync, so none is lost). At most
//! [`QUEUED`] runs wait at a time: memory stays a few buffers. Every
//! [`WRITEBACK_EVERY`] blocks the thread asks the device to start writing
//! back what it holds, so the disk works while the writer computes.

use std::io;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Scope;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::io::BlockDevice;

/// Runs queued at most (each as large as the caller's write, 1 MiB for the
/// metadata allocator).
const QUEUED: usize = 4;

/// Blocks written between two requests to start writeback (64 MiB). The
/// kernel would otherwise start writing a file back only once a tenth of
/// memory is dirty, so a restore of a few GB would leave nearly all of it to
/// the final sync, writing nothing while the tree is built.
const WRITEBACK_EVERY: usize = 16384;

enum Job {
    Write(BlockNr, Vec<Block>),
    /// Answered once every job queued before it is done.
    Barrier(SyncSender<()>),
}

/// The first write error: its kind and text (an `io::Error` is not `Clone`).
type FirstError = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

/// A device whose writes are done by a background thread (see the module
/// documentation).
pub struct WriteBehind<'d> {
    dev: &'d dyn BlockDevice,
    jobs: SyncSender<Job>,
    /// Buffers written and handed back, for reuse.
    spare: Mutex<Receiver<Vec<Block>>>,
    failed: FirstError,
}

impl<'d> WriteBehind<'d> {
    /// Wraps `dev`; its writing thread runs in `scope` and ends when the
    /// returned device is dropped.
    pub fn spawn<'s>(scope: &'s Scope<'s, 'd>, dev: &'d dyn BlockDevice) -> WriteBehind<'d> {
        let (jobs, queue) = sync_channel::<Job>(QUEUED);
        let (give_back, spare) = sync_channel::<Vec<Block>>(QUEUED + 1);
        let failed: FirstError = Arc::default();
        let seen = Arc::clone(&failed);
        scope.spawn(move || {
            let mut since_writeback = 0usize;
            let mut writeback = true;
            for job in queue {
                match job {
                    Job::Write(first, blocks) => {
                        let mut f = seen.lock().unwrap_or_else(PoisonError::into_inner);
                        if f.is_none() {
                            if let Err(e) = dev.write_run(first, &blocks) {
                                *f = Some((e.kind(), e.to_string()));
                            }
                        }
                        drop(f);
                        since_writeback += blocks.len();
                        if writeback && since_writeback >= WRITEBACK_EVERY {
                            // Only a hint: a device that refuses it is
                            // simply not asked again.
                            writeback = dev.start_writeback().is_ok();
                            since_writeback = 0;
                        }
                        // A full spare queue only means one buffer less to reuse.
                        if let Err(TrySendError::Disconnected(_)) = give_back.try_send(blocks) {
                            return;
                        }
                    }
                    Job::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        WriteBehind {
            dev,
            jobs,
            spare: Mutex::new(spare),
            failed,
        }
    }

    fn stopped() -> io::Error {
        io::Error::other("the write-behind thread has stopped")
    }

    /// The first write error, if any.
    fn check(&self) -> io::Result<()> {
        let f = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        match &*f {
            Some((kind, text)) => Err(io::Error::new(*kind, text.clone())),
            None => Ok(()),
        }
    }

    /// Waits until every queued run has been written.
    fn barrier(&self) -> io::Result<()> {
        let (done, wait) = sync_channel(1);
        self.jobs
            .send(Job::Barrier(done))
            .map_err(|_| Self::stopped())?;
        wait.recv().map_err(|_| Self::stopped())?;
        self.check()
    }
}

impl BlockDevice for WriteBehind<'_> {
    fn nr_blocks(&self) -> u64 {
        self.dev.nr_blocks()
    }

    fn read_run(&self, first: BlockNr, bufs: &mut [Block]) -> io::Result<()> {
        self.barrier()?;
        self.dev.read_run(first, bufs)
    }

    fn write_run(&self, first: BlockNr, bufs: &[Block]) -> io::Result<()> {
        self.check()?;
        let reused = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_recv()
            .ok();
        let mut blocks = reused.unwrap_or_default();
        blocks.clear();
        blocks.extend_from_slice(bufs);
        self.jobs
            .send(Job::Write(first, blocks))
            .map_err(|_| Self::stopped())
    }

    fn sync(&self) -> io::Result<()> {
        self.barrier()?;
        self.dev.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::io::MemDevice;

    /// Writes land in order, reads see every earlier write, and an error
    /// of the wrapped device comes back at the latest from `sync`.
    #[test]
    fn writes_are_ordered_and_visible_to_reads_and_errors_surface() {
        let mem = MemDevice::new(8);
        std::thread::scope(|s| {
            let dev = WriteBehind::spawn(s, &mem);
            let block = |v: u8| Block([v; 4096]);
            dev.write_run(1, &[block(1), block(2)]).unwrap();
            dev.write_at(2, &block(3)).unwrap();
            let mut b = Block([0; 4096]);
            dev.read_at(2, &mut b).unwrap();
            assert_eq!(b.0[0], 3);
            dev.read_at(1, &mut b).unwrap();
            assert_eq!(b.0[0], 1);
            dev.write_at(100, &block(4)).unwrap();
            assert!(dev.sync().is_err());
            assert!(dev.write_at(3, &block(5)).is_err());
        });
    }

    /// A device that counts the writeback requests it gets, and refuses
    /// them when asked to.
    struct CountingWriteback {
        mem: MemDevice,
        asked: std::sync::atomic::AtomicUsize,
        refuse: bool,
    }

    impl BlockDevice for CountingWriteback {
        fn nr_blocks(&self) -> u64 {
            self.mem.nr_blocks()
        }
        fn read_run(&self, first: BlockNr, bufs: &mut [Block]) -> io::Result<()> {
            self.mem.read_run(first, bufs)
        }
        fn write_run(&self, first: BlockNr, bufs: &[Block]) -> io::Result<()> {
            self.mem.write_run(first, bufs)
        }
        fn sync(&self) -> io::Result<()> {
            self.mem.sync()
        }
        fn start_writeback(&self) -> io::Result<()> {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.refuse {
                Err(io::Error::other("no writeback here"))
            } else {
                Ok(())
            }
        }
    }

    /// Writeback is requested once per `WRITEBACK_EVERY` blocks written; a
    /// device that refuses it is not asked again and its writes still land.
    #[test]
    fn writeback_is_started_as_the_writes_go() {
        let run = 256;
        let runs = 3 * WRITEBACK_EVERY / run + 1;
        for refuse in [false, true] {
            let dev = CountingWriteback {
                mem: MemDevice::new(run),
                asked: std::sync::atomic::AtomicUsize::new(0),
                refuse,
            };
            std::thread::scope(|s| {
                let behind = WriteBehind::spawn(s, &dev);
                let blocks = vec![Block([7; 4096]); run];
                for _ in 0..runs {
                    behind.write_run(0, &blocks).unwrap();
                }
                behind.sync().unwrap();
            });
            let asked = dev.asked.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(asked, if refuse { 1 } else { 3 });
            let mut b = Block([0; 4096]);
            dev.mem.read_at(run as u64 - 1, &mut b).unwrap();
            assert_eq!(b.0[0], 7);
        }
    }
}
