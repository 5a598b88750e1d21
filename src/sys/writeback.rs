//! Writeback overlapped with the work that produces the data: files (or an archive being
//! written) are flushed to disk by `fdatasync` on a thread of their own WHILE the next
//! bytes are decoded or compressed, so the final durable sync (a restore's `syncfs`, an
//! archive's `fsync`) finds little left to write.
//!
//! Why: restore and backup are measured against `zstd -d | tar -x` and `tar | zstd`, which
//! leave everything in the page cache. Being durable is not negotiable here (a restored
//! budget or a backup must survive a power cut the moment the command says done), but
//! with the kernel's defaults (writeback starts at 10 % of memory dirty) nothing reaches
//! the disk until the final sync, which then waits for all of it. Starting the writeback
//! early turns that wait into I/O done alongside the CPU work.
//!
//! Errors of a background sync are kept and returned by [`Writeback::finish`]: the
//! caller's durable sync must not report success over a write error seen here.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Files waiting for their sync: each holds an open descriptor, so the queue is bounded
/// (a producer faster than the disk then waits, as it would for the final sync).
const QUEUE: usize = 64;

/// A thread that `fdatasync`s the files handed to it, in order.
#[derive(Debug)]
pub struct Writeback {
    tx: Option<mpsc::SyncSender<File>>,
    worker: Option<JoinHandle<io::Result<()>>>,
}

impl Writeback {
    pub fn start() -> io::Result<Writeback> {
        let (tx, rx) = mpsc::sync_channel::<File>(QUEUE);
        let worker = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                let mut first_err = None;
                for f in rx {
                    if let Err(e) = f.sync_data() {
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            })?;
        Ok(Writeback {
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Sync `f` in the background (a `try_clone` of a file still being written is fine:
    /// what is dirty when its turn comes is written).
    pub fn push(&self, f: File) {
        if let Some(tx) = &self.tx {
            // The worker only ends when the sender is dropped: a send cannot fail before.
            let _ = tx.send(f);
        }
    }

    /// Wait until every file handed over is synced; the first error of any of them.
    pub fn finish(mut self) -> io::Result<()> {
        self.tx.take();
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the writeback thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Writeback {
    /// Dropped without [`finish`](Writeback::finish) (an error path): the queue is closed
    /// and the thread ends after the syncs already queued; nobody waits for it.
    fn drop(&mut self) {
        self.tx.take();
    }
}

/// A file being written whose writeback is started every [`FlushingFile::EVERY`] bytes.
#[derive(Debug)]
pub struct FlushingFile {
    file: File,
    wb: Writeback,
    since: u64,
}

impl FlushingFile {
    /// Bytes written between two background syncs: large enough that the syncs are few
    /// (each is a journal commit), small enough that the last one leaves little behind.
    pub const EVERY: u64 = 32 * 1024 * 1024;

    pub fn new(file: File) -> io::Result<FlushingFile> {
        Ok(FlushingFile {
            file,
            wb: Writeback::start()?,
            since: 0,
        })
    }

    /// Wait for the background syncs; the file, to be synced (all of it) by the caller.
    pub fn finish(self) -> io::Result<File> {
        self.wb.finish()?;
        Ok(self.file)
    }
}

impl Write for FlushingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= Self::EVERY {
            self.since = 0;
            self.wb.push(self.file.try_clone()?);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn files_handed_over_are_synced_and_finish_waits() {
        let dir = tempfile::tempdir().unwrap();
        let wb = Writeback::start().unwrap();
        for i in 0..10 {
            let p = dir.path().join(format!("f{i}"));
            let mut f = File::create(&p).unwrap();
            f.write_all(&[i as u8; 4096]).unwrap();
            wb.push(f);
        }
        wb.finish().unwrap();
        for i in 0..10 {
            let b = std::fs::read(dir.path().join(format!("f{i}"))).unwrap();
            assert_eq!(b, vec![i as u8; 4096]);
        }
    }

    #[test]
    fn a_sync_error_reaches_finish() {
        // fdatasync of a pipe is EINVAL: an error the worker must keep, not drop.
        let (r, _w) = nix::unistd::pipe().unwrap();
        let wb = Writeback::start().unwrap();
        wb.push(File::from(r));
        assert!(wb.finish().is_err());
    }

    #[test]
    fn a_flushing_file_writes_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("archive");
        let mut w = FlushingFile::new(File::create(&p).unwrap()).unwrap();
        let chunk: Vec<u8> = (0..=255u8).cycle().take(1024 * 1024).collect();
        for _ in 0..70 {
            w.write_all(&chunk).unwrap();
        }
        let f = w.finish().unwrap();
        f.sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&p).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 70 * chunk.len());
        assert!(back.chunks(chunk.len()).all(|c| c == &chunk[..]));
    }
}
