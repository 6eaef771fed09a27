//! Running an IR source and an IR sink on two threads.
//!
//! The source side sees a [`MetadataVisitor`] that batches events and sends
//! them over a bounded channel; the sink runs on its own thread. Errors keep
//! document order: when both sides fail, the sink's error (about an earlier
//! event) wins.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::thin::ir::{DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo, Visit};

type Result<T> = std::result::Result<T, IrError>;

/// Events per batch.
const BATCH: usize = 1024;
/// Batches in flight.
const DEPTH: usize = 8;

/// One IR event.
enum Event {
    SuperblockBegin(SuperblockInfo),
    SuperblockEnd,
    DefBegin(u64),
    DefEnd,
    DeviceBegin(DeviceInfo),
    DeviceEnd,
    Map(Map),
    Ref(u64),
    Eof,
}

/// The source-side visitor: batches events into the channel.
struct Sender {
    tx: SyncSender<Vec<Event>>,
    batch: Vec<Event>,
}

impl Sender {
    fn push(&mut self, e: Event) -> Result<Visit> {
        self.batch.push(e);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(Visit::Continue)
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(b).map_err(|_| IrError::SinkStopped)
    }
}

impl MetadataVisitor for Sender {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> Result<Visit> {
        self.push(Event::SuperblockBegin(sb.clone()))?;
        // The sink may want to act on the superblock at once (e.g. open the output).
        self.flush()?;
        Ok(Visit::Continue)
    }
    fn superblock_end(&mut self) -> Result<Visit> {
        self.push(Event::SuperblockEnd)
    }
    fn def_begin(&mut self, name: u64) -> Result<Visit> {
        self.push(Event::DefBegin(name))
    }
    fn def_end(&mut self) -> Result<Visit> {
        self.push(Event::DefEnd)
    }
    fn device_begin(&mut self, dev: &DeviceInfo) -> Result<Visit> {
        self.push(Event::DeviceBegin(*dev))
    }
    fn device_end(&mut self) -> Result<Visit> {
        self.push(Event::DeviceEnd)
    }
    fn map(&mut self, m: &Map) -> Result<Visit> {
        self.push(Event::Map(*m))
    }
    fn ref_shared(&mut self, name: u64) -> Result<Visit> {
        self.push(Event::Ref(name))
    }
    fn eof(&mut self) -> Result<Visit> {
        self.push(Event::Eof)?;
        self.flush()?;
        Ok(Visit::Continue)
    }
}

fn drain(rx: &Receiver<Vec<Event>>, sink: &mut dyn MetadataVisitor) -> Result<()> {
    for batch in rx {
        for e in batch {
            let v = match e {
                Event::SuperblockBegin(sb) => sink.superblock_begin(&sb)?,
                Event::SuperblockEnd => sink.superblock_end()?,
                Event::DefBegin(n) => sink.def_begin(n)?,
                Event::DefEnd => sink.def_end()?,
                Event::DeviceBegin(d) => sink.device_begin(&d)?,
                Event::DeviceEnd => sink.device_end()?,
                Event::Map(m) => sink.map(&m)?,
                Event::Ref(n) => sink.ref_shared(n)?,
                Event::Eof => sink.eof()?,
            };
            if v == Visit::Stop {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs `source` (driving the visitor it is given) on this thread and `sink`
/// on another.
///
/// # Errors
/// The first error in document order.
pub fn run_pipelined<S>(
    source: impl FnOnce(&mut dyn MetadataVisitor) -> Result<()>,
    sink: &mut S,
) -> Result<()>
where
    S: MetadataVisitor + Send,
{
    let (tx, rx) = sync_channel::<Vec<Event>>(DEPTH);
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || drain(&rx, sink));
        let mut sender = Sender {
            tx,
            batch: Vec::with_capacity(BATCH),
        };
        let src_res = source(&mut sender);
        let flushed = sender.flush();
        drop(sender);
        let sink_res = worker.join().unwrap_or(Err(IrError::SinkPanicked));
        sink_res?;
        src_res?;
        flushed
    })
}
