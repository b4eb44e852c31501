// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT

//! The dmapingpong user-space ABI: ioctl numbers and argument structures of
//! `/dev/dmapingpong`. See [`abi`] for the semantics.
#![no_std]

pub mod abi;
pub use abi::*;
