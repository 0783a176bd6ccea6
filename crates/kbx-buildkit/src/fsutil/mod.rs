//! fsutil's packet protocol: the sender (build context) and the receiver (`local` export).

mod mode;
pub(crate) mod receive;
pub(crate) mod send;
mod walk;

pub(crate) use walk::Filter;
