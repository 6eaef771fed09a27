//! The one integration-test binary: one module per tool plus shared helpers.

mod util;

mod check;
mod cli_contract;
mod delta;
mod dump;
mod kernel_vm;
mod kernel_vm_e2e;
mod kernel_vm_lvm;
mod kernel_vm_migrate;
mod kernel_vm_replicate;
mod kernel_vm_send_recv;
mod kernel_vm_send_recv_lvm;
mod layers;
mod ls;
mod merge;
mod metadata_size;
mod migrate;
mod pack;
mod repair;
mod repair_matrix;
mod repair_recovery;
mod restore;
mod rmap;
mod send_recv;
mod shrink;
mod trim;
