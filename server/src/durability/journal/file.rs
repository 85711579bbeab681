//! The file layer beneath the journal: a directory of files, written with O_DIRECT through
//! glommio's [`DmaFile`] ([`Store::Disk`]), or held in memory with injected faults and simulated
//! crashes ([`Store::Mem`]).
//!
//! Two implementations picked when the journal is opened, so an enum (house style), not a trait.
//! The memory disk is compiled in, not only under `cfg(test)`, so that the server's integration
//! tests can crash a journal too.
//!
//! The memory disk's crash model, which is what POSIX promises and no more:
//! - file bytes are durable only after `fdatasync` of that file; a crash keeps the synced bytes,
//!   plus, if asked, the first `torn_bytes` of the writes since (a torn write);
//! - names (create, rename, remove) are durable only after `sync_dir`; a crash keeps the durable
//!   names plus, if asked, a prefix of the later name changes in their order (a journaling
//!   filesystem commits them in order, so any prefix is a state a reboot can find);
//! - a power cut after `n` more mutating operations makes every later one fail, as if the machine
//!   stopped there; [`MemDisk::crash`] then gives the disk a reboot would find.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{Directory, DmaFile, OpenOptions};

use super::JournalError;

/// Bytes read from a file at once on replay: large enough that a 64 MiB journal takes a few
/// hundred reads, small enough to stay within a test executor's locked I/O memory.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Where the journal's files live.
#[derive(Clone, Debug)]
pub enum Store {
    /// A directory on a filesystem that supports O_DIRECT (ext4, xfs; not tmpfs).
    Disk(PathBuf),
    /// An in-memory disk for tests: faults, power cuts and crashes on demand.
    Mem(MemDisk),
}

/// One open journal file.
#[derive(Debug)]
pub enum JournalFile {
    /// A file opened with O_DIRECT on the current executor.
    Dma(DmaFile),
    /// A file of a memory disk.
    Mem {
        /// The disk.
        disk: MemDisk,
        /// The file's index in the disk's inode table.
        inode: usize,
    },
}

impl Store {
    /// The path of `name` in this store, for errors and warnings.
    pub fn path(&self, name: &str) -> PathBuf {
        match self {
            Store::Disk(dir) => dir.join(name),
            Store::Mem(_) => Path::new("mem:").join(name),
        }
    }

    fn io_error(&self, name: &str, op: &'static str, e: io::Error) -> JournalError {
        JournalError::io(self.path(name), op, e)
    }

    /// Creates the directory if needed and lists the names in it.
    pub fn list(&self) -> Result<Vec<String>, JournalError> {
        match self {
            Store::Disk(dir) => {
                let err = |e| self.io_error("", "list", e);
                std::fs::create_dir_all(dir).map_err(err)?;
                let mut names = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(err)? {
                    let entry = entry.map_err(err)?;
                    // Names that are not UTF-8 are not ours; leave them alone.
                    if let Ok(name) = entry.file_name().into_string() {
                        names.push(name);
                    }
                }
                names.sort();
                Ok(names)
            }
            Store::Mem(disk) => Ok(disk.names()),
        }
    }

    /// The whole content of `name`, or `None` when there is no such file.
    pub async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, JournalError> {
        match self {
            Store::Disk(dir) => {
                let path = dir.join(name);
                let file = match OpenOptions::new().read(true).dma_open(&path).await {
                    Ok(f) => f,
                    Err(e) => {
                        let e = io::Error::from(e);
                        if e.kind() == io::ErrorKind::NotFound {
                            return Ok(None);
                        }
                        return Err(self.io_error(name, "open", e));
                    }
                };
                let err = |e: glommio::GlommioError<()>| self.io_error(name, "read", e.into());
                let size = file.file_size().await.map_err(err)?;
                let mut out = Vec::with_capacity(size as usize);
                while (out.len() as u64) < size {
                    let chunk = file
                        .read_at_aligned(out.len() as u64, READ_CHUNK_BYTES)
                        .await
                        .map_err(err)?;
                    if chunk.is_empty() {
                        break;
                    }
                    out.extend_from_slice(&chunk);
                }
                file.close().await.map_err(err)?;
                Ok(Some(out))
            }
            Store::Mem(disk) => Ok(disk.bytes(name)),
        }
    }

    /// Lets glommio probe the device once on the calling executor, with a read of `name`, a
    /// whole block of real data. glommio checks, at the first DMA open on each device per
    /// executor, whether the device supports polled I/O by reading the opened file: our journal
    /// files are write-only (the probe fails and logs an ERROR, though polling is then correctly
    /// off) or empty (the read succeeds without touching the device, and polling is wrongly
    /// turned on: later reads fail with EOPNOTSUPP on devices without poll queues). A failure
    /// here is ignored: the probe is an optimisation of glommio's, and the journal's own opens
    /// report real errors.
    pub async fn probe_device(&self, name: &str) {
        if let Store::Disk(dir) = self {
            if let Ok(file) = glommio::io::DmaFile::open(dir.join(name)).await {
                let _ = file.close().await;
            }
        }
    }

    /// Creates `name` empty (truncating a file of that name), open for writing.
    pub async fn create(&self, name: &str) -> Result<JournalFile, JournalError> {
        match self {
            Store::Disk(dir) => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DSYNC) // see `writes_are_durable`
                .dma_open(dir.join(name))
                .await
                .map(JournalFile::Dma)
                .map_err(|e| self.io_error(name, "create", e.into())),
            Store::Mem(disk) => disk
                .create(name)
                .map(|inode| JournalFile::Mem {
                    disk: disk.clone(),
                    inode,
                })
                .map_err(|e| self.io_error(name, "create", e)),
        }
    }

    /// Opens the existing file `name` for writing.
    pub async fn open_write(&self, name: &str) -> Result<JournalFile, JournalError> {
        match self {
            Store::Disk(dir) => OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DSYNC) // see `writes_are_durable`
                .dma_open(dir.join(name))
                .await
                .map(JournalFile::Dma)
                .map_err(|e| self.io_error(name, "open", e.into())),
            Store::Mem(disk) => disk
                .open(name)
                .map(|inode| JournalFile::Mem {
                    disk: disk.clone(),
                    inode,
                })
                .map_err(|e| self.io_error(name, "open", e)),
        }
    }

    /// Renames `from` to `to`, replacing `to` atomically.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), JournalError> {
        match self {
            Store::Disk(dir) => glommio::io::rename(dir.join(from), dir.join(to))
                .await
                .map_err(|e| self.io_error(from, "rename", e.into())),
            Store::Mem(disk) => disk
                .rename(from, to)
                .map_err(|e| self.io_error(from, "rename", e)),
        }
    }

    /// Removes `name`.
    pub async fn remove(&self, name: &str) -> Result<(), JournalError> {
        match self {
            Store::Disk(dir) => glommio::io::remove(dir.join(name))
                .await
                .map_err(|e| self.io_error(name, "remove", e.into())),
            Store::Mem(disk) => disk
                .remove(name)
                .map_err(|e| self.io_error(name, "remove", e)),
        }
    }

    /// True when a completed write is already durable, so no fdatasync need follow it: disk
    /// files are opened `O_DSYNC` (one io_uring operation per group commit instead of a write
    /// and an fdatasync, each of which waits for the shard to give way to glommio's reactor).
    /// The memory disk models the two steps apart, so its faults can land between them.
    pub fn writes_are_durable(&self) -> bool {
        matches!(self, Store::Disk(_))
    }

    /// Makes the directory's names (creations, renames, removals) durable.
    pub async fn sync_dir(&self) -> Result<(), JournalError> {
        match self {
            Store::Disk(dir) => {
                let err =
                    |e: glommio::GlommioError<()>| self.io_error("", "sync directory", e.into());
                let d = Directory::open(dir).await.map_err(err)?;
                d.sync().await.map_err(err)?;
                d.close().await.map_err(err)
            }
            Store::Mem(disk) => disk
                .sync_dir()
                .map_err(|e| self.io_error("", "sync directory", e)),
        }
    }
}

impl JournalFile {
    /// Writes `bytes` (whole blocks) at `offset` (block aligned); returns the bytes written,
    /// which may be fewer.
    pub async fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<usize> {
        match self {
            JournalFile::Dma(file) => {
                let mut buf = file.alloc_dma_buffer(bytes.len());
                buf.as_bytes_mut().copy_from_slice(bytes);
                file.write_at(buf, offset).await.map_err(Into::into)
            }
            JournalFile::Mem { disk, inode } => disk.write(*inode, offset, bytes),
        }
    }

    /// Makes the bytes written so far durable.
    pub async fn fdatasync(&self) -> io::Result<()> {
        match self {
            JournalFile::Dma(file) => file.fdatasync().await.map_err(Into::into),
            JournalFile::Mem { disk, inode } => disk.sync(*inode),
        }
    }

    /// Closes the file (errors on close change nothing: every byte that matters was synced).
    pub async fn close(self) {
        if let JournalFile::Dma(file) = self {
            let _ = file.close().await;
        }
    }
}

/// A fault the memory disk injects into the next write or sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next write writes only this many bytes (fewer than asked) and says so.
    ShortWrite(usize),
    /// The next write writes nothing and returns 0.
    WriteZero,
    /// The next write fails with EIO, having written nothing.
    WriteError,
    /// The next fdatasync fails with EIO; what it should have made durable stays volatile.
    SyncError,
}

/// What a reboot after a crash finds on a memory disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crash {
    /// How many name changes since the last directory sync survive (a prefix, in order).
    pub dir_ops_kept: usize,
    /// How many bytes of each file's unsynced writes survive (a prefix, in order).
    pub torn_bytes: usize,
    /// When set, the unsynced writes tear by sector instead, not as a prefix: each
    /// [`SECTOR_BYTES`] sector of them survives or not, as a hash of this seed and the sector's
    /// offset says (a device writes each sector whole, but a multi-sector write in any order).
    pub sectors_seed: Option<u64>,
}

/// The unit a device writes whole (the smallest logical block of common disks).
pub const SECTOR_BYTES: usize = 512;

/// An in-memory disk (see the module doc for its crash model). Cloning shares the disk.
#[derive(Clone, Debug, Default)]
pub struct MemDisk(Rc<RefCell<MemFs>>);

/// The memory disk's state.
#[derive(Debug, Default)]
struct MemFs {
    /// Every file ever created; names point into it.
    inodes: Vec<Inode>,
    /// The names as the running system sees them.
    names: BTreeMap<String, usize>,
    /// The names as of the last directory sync.
    durable_names: BTreeMap<String, usize>,
    /// Name changes since the last directory sync, in order.
    dir_ops: Vec<DirOp>,
    /// Faults waiting for the next write or sync.
    faults: VecDeque<Fault>,
    /// Mutating operations left before the power cut; `None` for no cut.
    ops_left: Option<u64>,
}

/// One file of the memory disk.
#[derive(Clone, Debug, Default)]
struct Inode {
    /// The bytes as the running system reads them.
    data: Vec<u8>,
    /// The bytes as of the last successful fdatasync.
    synced: Vec<u8>,
    /// Writes since the last successful fdatasync: offset and bytes.
    unsynced: Vec<(u64, Vec<u8>)>,
}

/// A change of names.
#[derive(Clone, Debug)]
enum DirOp {
    /// `name` now points at an inode (create, or the target of a rename).
    Link(String, usize),
    /// `name` is gone (remove, or the source of a rename).
    Unlink(String),
    /// A rename: both at once.
    Rename(String, String),
}

fn apply_dir_op(names: &mut BTreeMap<String, usize>, op: &DirOp) {
    match op {
        DirOp::Link(name, inode) => {
            names.insert(name.clone(), *inode);
        }
        DirOp::Unlink(name) => {
            names.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(inode) = names.remove(from) {
                names.insert(to.clone(), inode);
            }
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let offset = offset as usize;
    if data.len() < offset + bytes.len() {
        data.resize(offset + bytes.len(), 0);
    }
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// Writes the sectors of `bytes` (at file `offset`) that survive a tear seeded by `seed`.
fn write_sectors(data: &mut Vec<u8>, offset: u64, bytes: &[u8], seed: u64) {
    let end = offset + bytes.len() as u64;
    let mut at = offset;
    while at < end {
        let sector = at / SECTOR_BYTES as u64;
        let next = ((sector + 1) * SECTOR_BYTES as u64).min(end);
        // splitmix64's finaliser: a well-mixed bit per (seed, sector).
        let mut z = seed ^ sector.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        if (z ^ (z >> 31)) & 1 == 1 {
            let from = (at - offset) as usize;
            write_into(data, at, &bytes[from..from + (next - at) as usize]);
        }
        at = next;
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(what.to_string())
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        MemDisk::default()
    }

    /// Queues a fault for the next write or sync (faults of each kind apply in order).
    pub fn inject(&self, fault: Fault) {
        self.0.borrow_mut().faults.push_back(fault);
    }

    /// Cuts the power after `ops` more mutating operations (writes, syncs, name changes).
    pub fn cut_power_after(&self, ops: u64) {
        self.0.borrow_mut().ops_left = Some(ops);
    }

    /// Whether the power was cut (some operation failed for it).
    pub fn power_is_cut(&self) -> bool {
        self.0.borrow().ops_left == Some(0)
    }

    /// The disk a reboot would find after a crash now.
    pub fn crash(&self, crash: Crash) -> MemDisk {
        let fs = self.0.borrow();
        let mut names = fs.durable_names.clone();
        for op in fs.dir_ops.iter().take(crash.dir_ops_kept) {
            apply_dir_op(&mut names, op);
        }
        let inodes = fs
            .inodes
            .iter()
            .map(|inode| {
                let mut data = inode.synced.clone();
                let mut left = crash.torn_bytes;
                for (offset, bytes) in &inode.unsynced {
                    if let Some(seed) = crash.sectors_seed {
                        write_sectors(&mut data, *offset, bytes, seed);
                        continue;
                    }
                    let n = left.min(bytes.len());
                    write_into(&mut data, *offset, &bytes[..n]);
                    left -= n;
                }
                Inode {
                    synced: data.clone(),
                    data,
                    unsynced: Vec::new(),
                }
            })
            .collect();
        MemDisk(Rc::new(RefCell::new(MemFs {
            inodes,
            durable_names: names.clone(),
            names,
            ..MemFs::default()
        })))
    }

    /// The names on the disk, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.borrow().names.keys().cloned().collect()
    }

    /// The current bytes of `name`.
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        let fs = self.0.borrow();
        fs.names.get(name).map(|&i| fs.inodes[i].data.clone())
    }

    /// Replaces the bytes of `name`, durably, as a disk that rots would (tests corrupt files
    /// with it). Returns false when there is no such file.
    pub fn set_bytes(&self, name: &str, bytes: &[u8]) -> bool {
        let mut fs = self.0.borrow_mut();
        let Some(&i) = fs.names.get(name) else {
            return false;
        };
        let inode = &mut fs.inodes[i];
        inode.data = bytes.to_vec();
        inode.synced = bytes.to_vec();
        inode.unsynced.clear();
        true
    }

    /// Counts one mutating operation against the power budget.
    fn power(fs: &mut MemFs) -> io::Result<()> {
        match &mut fs.ops_left {
            Some(0) => Err(eio("power cut")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn take_fault(fs: &mut MemFs, sync: bool) -> Option<Fault> {
        let at = fs
            .faults
            .iter()
            .position(|f| (*f == Fault::SyncError) == sync)?;
        fs.faults.remove(at)
    }

    fn create(&self, name: &str) -> io::Result<usize> {
        let mut fs = self.0.borrow_mut();
        Self::power(&mut fs)?;
        fs.inodes.push(Inode::default());
        let op = DirOp::Link(name.to_string(), fs.inodes.len() - 1);
        apply_dir_op(&mut fs.names, &op);
        fs.dir_ops.push(op);
        Ok(fs.inodes.len() - 1)
    }

    fn open(&self, name: &str) -> io::Result<usize> {
        let fs = self.0.borrow();
        fs.names
            .get(name)
            .copied()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut fs = self.0.borrow_mut();
        Self::power(&mut fs)?;
        if !fs.names.contains_key(from) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let op = DirOp::Rename(from.to_string(), to.to_string());
        apply_dir_op(&mut fs.names, &op);
        fs.dir_ops.push(op);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.0.borrow_mut();
        Self::power(&mut fs)?;
        if !fs.names.contains_key(name) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let op = DirOp::Unlink(name.to_string());
        apply_dir_op(&mut fs.names, &op);
        fs.dir_ops.push(op);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut fs = self.0.borrow_mut();
        Self::power(&mut fs)?;
        fs.durable_names = fs.names.clone();
        fs.dir_ops.clear();
        Ok(())
    }

    fn write(&self, inode: usize, offset: u64, bytes: &[u8]) -> io::Result<usize> {
        let mut fs = self.0.borrow_mut();
        Self::power(&mut fs)?;
        let n = match Self::take_fault(&mut fs, false) {
            None => bytes.len(),
            Some(Fault::ShortWrite(n)) => n.min(bytes.len()),
            Some(Fault::WriteZero) => 0,
            Some(_) => return Err(eio("injected write error")),
        };
        let file = &mut fs.inodes[inode];
        write_into(&mut file.data, offset, &bytes[..n]);
        file.unsynced.push((offset, bytes[..n].to_vec()));
        Ok(n)
    }

    fn sync(&self, inode: usize) -> io::Result<()> {
        let mut fs = self.0.borrow_mut();
        Self::power(&mut fs)?;
        if Self::take_fault(&mut fs, true).is_some() {
            return Err(eio("injected fdatasync error"));
        }
        let file = &mut fs.inodes[inode];
        file.synced = file.data.clone();
        file.unsynced.clear();
        Ok(())
    }
}
