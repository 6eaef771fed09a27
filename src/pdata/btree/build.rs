//! Btree builder: packs sorted entries into leaves and internal nodes.
