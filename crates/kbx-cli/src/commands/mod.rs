//! One module per subcommand. A command reads its arguments and calls the services (the
//! driver, the store, the build options, the registry, progress); commands never call each
//! other, so what two commands share lives in a service module.

pub(crate) mod build;
pub(crate) mod completion;
pub(crate) mod create;
pub(crate) mod dial_stdio;
pub(crate) mod du;
pub(crate) mod history;
pub(crate) mod imagetools;
pub(crate) mod inspect;
pub(crate) mod ls;
pub(crate) mod prune;
pub(crate) mod rm;
pub(crate) mod stop;
pub(crate) mod use_builder;
pub(crate) mod version;
