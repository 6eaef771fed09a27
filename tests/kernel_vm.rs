//! Tests for kernel_vm.
