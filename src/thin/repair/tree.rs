//! Walking a classified tree: its leaves left to right, and the key ranges
//! lost under bad or dropped nodes.

use crate::pdata::block::BlockNr;
use crate::thin::repair::classify::{Classified, Kind};

/// A key range lost under a bad node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    /// First key of the range.
    pub begin: u64,
    /// End of the range (exclusive); `None` = to the end of the key space.
    pub end: Option<u64>,
    /// The bad block.
    pub block: BlockNr,
    /// Why it was lost.
    pub why: &'static str,
}

fn why(cl: &Classified, b: BlockNr) -> &'static str {
    if cl.scan.io_errors.contains(&b) {
        "io error"
    } else if cl.scan.nodes.contains_key(&b) {
        "invalid node"
    } else {
        "checksum error"
    }
}

/// The leaves of the `kind` tree under `root`, in key order; ranges under bad
/// nodes go to `lost`.
#[must_use]
pub fn leaves(cl: &Classified, root: BlockNr, kind: Kind, lost: &mut Vec<Lost>) -> Vec<BlockNr> {
    let mut out = Vec::new();
    match cl.class_as(root, kind) {
        None => lost.push(Lost {
            begin: 0,
            end: None,
            block: root,
            why: why(cl, root),
        }),
        Some(c) => collect(cl, root, c.height, None, &mut out, lost),
    }
    out
}

fn collect(
    cl: &Classified,
    b: BlockNr,
    height: u32,
    hi: Option<u64>,
    out: &mut Vec<BlockNr>,
    lost: &mut Vec<Lost>,
) {
    if height == 0 {
        out.push(b);
        return;
    }
    let kids = cl.children(b);
    for (i, &(key, child, kept)) in kids.iter().enumerate() {
        let end = kids.get(i + 1).map(|k| k.0).or(hi);
        if kept {
            collect(cl, child, height - 1, end, out, lost);
        } else {
            lost.push(Lost {
                begin: key,
                end,
                block: child,
                why: why(cl, child),
            });
        }
    }
}
