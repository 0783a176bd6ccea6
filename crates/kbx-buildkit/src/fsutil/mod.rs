//! fsutil's packet protocol: the sender (build context) and the receiver (`local` export).

pub(crate) mod loopback;
mod mode;
pub(crate) mod receive;
pub(crate) mod send;
mod walk;
pub(crate) mod wire;

pub(crate) use walk::Filter;
