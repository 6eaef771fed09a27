//! The difference between two btrees of 64-bit values, reading only what
//! differs.
//!
//! [`Walker`](super::walk::Walker) reads every node reachable from its roots;
//! that is what checking and dumping need, but an incremental copy between a
//! snapshot and its origin needs only the keys whose values changed. Two
//! trees that share subtrees (copy-on-write after a snapshot) are walked here
//! side by side in key order, and a subtree reached by both at the same point
//! is skipped without being read: a block's content fixes its keys and
//! values, so both trees hold exactly the same entries for its key range.
//! The cost is then in proportion to the nodes that differ (times the tree
//! height), not to the size of the trees.
//!
//! Each node read is validated as the walker validates it (checksum, header,
//! key order, block number, value size, keys within the parent's range, leaves
//! all at one depth, depth bounded); the first bad node ends the diff with
//! its [`NodeError`].

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeError, NodeErrorKind, NodeRef};
use crate::pdata::btree::walk::MAX_DEPTH;
use crate::pdata::io::BlockDevice;

/// A key whose value differs between the two trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDiff {
    /// Only the left tree has the key (with this value).
    Left(u64, u64),
    /// Only the right tree has the key.
    Right(u64, u64),
    /// Both have it, with different values (left, right).
    Both(u64, u64, u64),
}

/// What a diff read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Nodes read (both trees).
    pub nodes_read: u64,
    /// Subtrees the two trees share, skipped unread.
    pub shared_skipped: u64,
}

/// A node of one tree the cursor has not entered yet.
#[derive(Clone, Copy)]
struct Pending {
    block: BlockNr,
    /// Keys of the subtree are at least this (the parent's key).
    lo: u64,
    /// Keys of the subtree are at most this (the next parent key).
    hi: Option<u64>,
    /// Levels below it (0: a leaf).
    height: u32,
}

/// What a cursor yields next, in key order.
#[derive(Clone, Copy)]
enum Head {
    Done,
    Node(Pending),
    Entry(u64, u64),
}

/// One decoded node on the cursor's path.
struct Frame {
    entries: Vec<(u64, u64)>,
    next: usize,
    height: u32,
    hi: Option<u64>,
}

/// A position in one tree: the path of entered nodes, or the root not yet
/// entered.
struct Cursor<'d> {
    dev: &'d dyn BlockDevice,
    value_size: u32,
    root: Option<Pending>,
    path: Vec<Frame>,
    buf: Box<Block>,
    nodes_read: u64,
}

impl<'d> Cursor<'d> {
    /// A cursor that has nothing to yield (yet).
    fn idle(dev: &'d dyn BlockDevice, value_size: u32) -> Self {
        Cursor {
            dev,
            value_size,
            root: None,
            path: Vec::new(),
            buf: Block::zeroed(),
            nodes_read: 0,
        }
    }

    fn new(dev: &'d dyn BlockDevice, root: BlockNr, value_size: u32) -> Result<Self, NodeError> {
        let mut c = Cursor::idle(dev, value_size);
        let height = c.height_of(root)?;
        c.root = Some(Pending {
            block: root,
            lo: 0,
            hi: None,
            height,
        });
        Ok(c)
    }

    /// The tree's height, from its leftmost path (all leaves are at one
    /// depth; [`Cursor::enter`] checks that for every node entered).
    fn height_of(&mut self, root: BlockNr) -> Result<u32, NodeError> {
        let mut nr = root;
        for depth in 0..MAX_DEPTH {
            let (leaf, first_child) = {
                let n = self.read(nr)?;
                (n.is_leaf(), (!n.is_empty()).then(|| n.value_u64(0)))
            };
            if leaf {
                return Ok(crate::pdata::low_u32(depth as u64));
            }
            nr = first_child.ok_or(NodeError {
                block: nr,
                kind: NodeErrorKind::EmptyInternal,
            })?;
        }
        Err(NodeError {
            block: nr,
            kind: NodeErrorKind::TooDeep,
        })
    }

    fn read(&mut self, nr: BlockNr) -> Result<NodeRef<'_>, NodeError> {
        let io = NodeError {
            block: nr,
            kind: NodeErrorKind::Io,
        };
        self.dev.read_at(nr, &mut self.buf).map_err(|_| io)?;
        self.nodes_read += 1;
        let vs = self.value_size;
        NodeRef::new(&self.buf.0, nr, vs)
    }

    fn head(&self) -> Head {
        if let Some(p) = self.root {
            return Head::Node(p);
        }
        let Some(top) = self.path.last() else {
            return Head::Done;
        };
        let (key, value) = top.entries[top.next];
        if top.height == 0 {
            return Head::Entry(key, value);
        }
        Head::Node(Pending {
            block: value,
            lo: key,
            hi: top.entries.get(top.next + 1).map_or(top.hi, |e| Some(e.0)),
            height: top.height - 1,
        })
    }

    /// Steps over the head (an entry, or a whole subtree unread).
    fn skip(&mut self) {
        if self.root.take().is_none() {
            if let Some(top) = self.path.last_mut() {
                top.next += 1;
            }
        }
        self.pop_finished();
    }

    fn pop_finished(&mut self) {
        while self.path.last().is_some_and(|f| f.next >= f.entries.len()) {
            self.path.pop();
        }
    }

    /// Reads the node at the head and moves into it.
    fn enter(&mut self) -> Result<(), NodeError> {
        let Head::Node(p) = self.head() else {
            return Ok(());
        };
        let err = |kind| NodeError {
            block: p.block,
            kind,
        };
        if self.path.len() >= MAX_DEPTH {
            return Err(err(NodeErrorKind::TooDeep));
        }
        let entries: Vec<(u64, u64)> = {
            let n = self.read(p.block)?;
            if n.is_leaf() != (p.height == 0) {
                return Err(err(NodeErrorKind::Unbalanced));
            }
            if !n.is_leaf() && n.is_empty() {
                return Err(err(NodeErrorKind::EmptyInternal));
            }
            n.keys()
                .iter()
                .zip(n.values_u64())
                .map(|(k, v)| (k.get(), v.get()))
                .collect()
        };
        let (first, last) = (entries.first(), entries.last());
        if first.is_some_and(|e| e.0 < p.lo) || last.is_some_and(|e| p.hi.is_some_and(|h| e.0 > h))
        {
            return Err(err(NodeErrorKind::KeyRange));
        }
        self.skip();
        self.path.push(Frame {
            entries,
            next: 0,
            height: p.height,
            hi: p.hi,
        });
        self.pop_finished();
        Ok(())
    }
}

/// Calls `visit` for every key whose value differs between the trees at
/// `left` and `right` (leaf values of `value_size` bytes, read as u64), in
/// ascending key order.
///
/// # Errors
/// The first damaged node read.
pub fn diff_trees(
    dev: &dyn BlockDevice,
    left: BlockNr,
    right: BlockNr,
    value_size: u32,
    mut visit: impl FnMut(KeyDiff),
) -> Result<DiffStats, NodeError> {
    let mut l = Cursor::new(dev, left, value_size)?;
    let mut r = Cursor::new(dev, right, value_size)?;
    let mut shared_skipped = 0;
    loop {
        match (l.head(), r.head()) {
            (Head::Done, Head::Done) => break,
            (Head::Node(a), Head::Node(b)) if a.block == b.block => {
                l.skip();
                r.skip();
                shared_skipped += 1;
            }
            // Enter the subtree that starts first; at one start, the taller
            // one (the other may be inside it, and then be skipped).
            (Head::Node(a), Head::Node(b)) => match a.lo.cmp(&b.lo).then(b.height.cmp(&a.height)) {
                std::cmp::Ordering::Less => l.enter()?,
                std::cmp::Ordering::Greater => r.enter()?,
                std::cmp::Ordering::Equal => {
                    l.enter()?;
                    r.enter()?;
                }
            },
            (Head::Node(a), Head::Entry(k, v)) => {
                if a.lo <= k {
                    l.enter()?;
                } else {
                    visit(KeyDiff::Right(k, v));
                    r.skip();
                }
            }
            (Head::Entry(k, v), Head::Node(b)) => {
                if b.lo <= k {
                    r.enter()?;
                } else {
                    visit(KeyDiff::Left(k, v));
                    l.skip();
                }
            }
            (Head::Node(_), Head::Done) => l.enter()?,
            (Head::Done, Head::Node(_)) => r.enter()?,
            (Head::Entry(k, v), Head::Done) => {
                visit(KeyDiff::Left(k, v));
                l.skip();
            }
            (Head::Done, Head::Entry(k, v)) => {
                visit(KeyDiff::Right(k, v));
                r.skip();
            }
            (Head::Entry(k1, v1), Head::Entry(k2, v2)) => match k1.cmp(&k2) {
                std::cmp::Ordering::Less => {
                    visit(KeyDiff::Left(k1, v1));
                    l.skip();
                }
                std::cmp::Ordering::Greater => {
                    visit(KeyDiff::Right(k2, v2));
                    r.skip();
                }
                std::cmp::Ordering::Equal => {
                    if v1 != v2 {
                        visit(KeyDiff::Both(k1, v1, v2));
                    }
                    l.skip();
                    r.skip();
                }
            },
        }
    }
    Ok(DiffStats {
        nodes_read: l.nodes_read + r.nodes_read,
        shared_skipped,
    })
}

/// The largest key of the tree at `root` (None when it is empty), read
/// along its rightmost path only.
///
/// # Errors
/// The first damaged node on that path.
pub fn last_key(
    dev: &dyn BlockDevice,
    root: BlockNr,
    value_size: u32,
) -> Result<Option<u64>, NodeError> {
    let mut c = Cursor::idle(dev, value_size);
    let mut nr = root;
    for _ in 0..MAX_DEPTH {
        let n = c.read(nr)?;
        let Some(i) = n.len().checked_sub(1) else {
            return if n.is_leaf() {
                Ok(None)
            } else {
                Err(NodeError {
                    block: nr,
                    kind: NodeErrorKind::EmptyInternal,
                })
            };
        };
        if n.is_leaf() {
            return Ok(Some(n.key(i)));
        }
        nr = n.value_u64(i);
    }
    Err(NodeError {
        block: nr,
        kind: NodeErrorKind::TooDeep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::btree::build::encode_node;
    use crate::pdata::btree::node::{INTERNAL_NODE, LEAF_NODE};
    use crate::pdata::checksum::{write_checksum, BlockKind};
    use crate::pdata::io::MemDevice;

    fn put(dev: &MemDevice, nr: u64, flags: u32, entries: &[(u64, u64)]) {
        let keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let values: Vec<u8> = entries.iter().flat_map(|e| e.1.to_le_bytes()).collect();
        let mut b = Block::zeroed();
        encode_node(&mut b, flags, 8, &keys, &values);
        b.0[8..16].copy_from_slice(&nr.to_le_bytes());
        write_checksum(&mut b.0, BlockKind::Node);
        dev.write_at(nr, &b).unwrap();
    }

    fn leaf(dev: &MemDevice, nr: u64, keys: std::ops::Range<u64>, value: u64) {
        let e: Vec<(u64, u64)> = keys.map(|k| (k, k + value)).collect();
        put(dev, nr, LEAF_NODE, &e);
    }

    fn diff(dev: &MemDevice, l: u64, r: u64) -> (Vec<KeyDiff>, DiffStats) {
        let mut out = Vec::new();
        let stats = diff_trees(dev, l, r, 8, |d| out.push(d)).unwrap();
        (out, stats)
    }

    /// Left: 1 -> [2: keys 0..4, 3: keys 10..14]. Right: 4 -> [5: 0..4 with
    /// key 1 changed, key 3 gone and key 5 added, 3]. Right2 (one level
    /// taller): 6 -> [7 -> [5, 3]].
    fn pool() -> MemDevice {
        let dev = MemDevice::new(16);
        leaf(&dev, 2, 0..4, 100);
        leaf(&dev, 3, 10..14, 100);
        put(&dev, 1, INTERNAL_NODE, &[(0, 2), (10, 3)]);
        put(
            &dev,
            5,
            LEAF_NODE,
            &[(0, 100), (1, 999), (2, 102), (5, 105)],
        );
        put(&dev, 4, INTERNAL_NODE, &[(0, 5), (10, 3)]);
        put(&dev, 7, INTERNAL_NODE, &[(0, 5), (10, 3)]);
        put(&dev, 6, INTERNAL_NODE, &[(0, 7)]);
        dev
    }

    #[test]
    fn changed_keys_in_order_and_shared_leaf_skipped_unread() {
        let dev = pool();
        let want = vec![
            KeyDiff::Both(1, 101, 999),
            KeyDiff::Left(3, 103),
            KeyDiff::Right(5, 105),
        ];
        let (got, stats) = diff(&dev, 1, 4);
        assert_eq!(got, want);
        assert_eq!(stats.shared_skipped, 1);
        // Heights (1, 2 and 4, 5), then 1, 2, 4, 5 entered: never leaf 3.
        assert_eq!(stats.nodes_read, 8);
        // Trees of different heights: leaf 3 is still skipped.
        let (got, stats) = diff(&dev, 1, 6);
        assert_eq!(got, want);
        assert_eq!(stats.shared_skipped, 1);
        // The same tree on both sides: nothing but the height paths is read.
        let (got, stats) = diff(&dev, 1, 1);
        assert!(got.is_empty());
        assert_eq!((stats.shared_skipped, stats.nodes_read), (1, 4));
        // Against an empty tree: every key, one-sided.
        put(&dev, 9, LEAF_NODE, &[]);
        let (got, _) = diff(&dev, 9, 1);
        assert_eq!(got.len(), 8);
        assert_eq!(last_key(&dev, 1, 8).unwrap(), Some(13));
        assert_eq!(last_key(&dev, 6, 8).unwrap(), Some(13));
        assert_eq!(last_key(&dev, 9, 8).unwrap(), None);
        assert!(got.iter().all(|d| matches!(d, KeyDiff::Right(..))));
    }

    #[test]
    fn damaged_node_read_is_reported_with_its_block() {
        let dev = pool();
        let mut b = Block::zeroed();
        dev.read_at(5, &mut b).unwrap();
        b.0[100] ^= 1;
        dev.write_at(5, &b).unwrap();
        let e = diff_trees(&dev, 1, 4, 8, |_| {}).unwrap_err();
        assert_eq!((e.block, e.kind), (5, NodeErrorKind::Checksum));
        // A node whose kind differs from what the tree's height says.
        put(&dev, 9, LEAF_NODE, &[]);
        put(&dev, 8, INTERNAL_NODE, &[(0, 2), (10, 1)]);
        let e = diff_trees(&dev, 8, 8, 8, |_| {});
        assert!(e.is_ok(), "the same root is skipped");
        let e = diff_trees(&dev, 8, 9, 8, |_| {}).unwrap_err();
        assert_eq!((e.block, e.kind), (1, NodeErrorKind::Unbalanced));
        // Keys below the parent's key.
        put(&dev, 10, INTERNAL_NODE, &[(0, 2), (11, 3)]);
        let e = diff_trees(&dev, 10, 9, 8, |_| {}).unwrap_err();
        assert_eq!((e.block, e.kind), (3, NodeErrorKind::KeyRange));
    }
}
