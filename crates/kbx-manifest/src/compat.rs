//! Differences between the Kubernetes API versions `k8s-openapi` can be built for.
//!
//! This crate never picks the version, so it must compile against each of them: some fields
//! (like `Deployment.spec` from 1.37 on) are required in newer versions and optional in older.

/// A field that is `T` in some API versions and `Option<T>` in others (such as
/// `Deployment.spec`), so code compiles against every version `k8s-openapi` supports.
pub trait MaybeOption<T> {
    /// The field holding `value`.
    fn wrap(value: T) -> Self;
    /// The value, if present.
    fn as_option(&self) -> Option<&T>;
    /// The value to change, if present.
    fn as_option_mut(&mut self) -> Option<&mut T>;
}

impl<T> MaybeOption<T> for T {
    fn wrap(value: T) -> Self {
        value
    }
    fn as_option(&self) -> Option<&T> {
        Some(self)
    }
    fn as_option_mut(&mut self) -> Option<&mut T> {
        Some(self)
    }
}

impl<T> MaybeOption<T> for Option<T> {
    fn wrap(value: T) -> Self {
        Some(value)
    }
    fn as_option(&self) -> Option<&T> {
        self.as_ref()
    }
    fn as_option_mut(&mut self) -> Option<&mut T> {
        self.as_mut()
    }
}
