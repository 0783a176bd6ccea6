//! Differences between the Kubernetes API versions `k8s-openapi` can be built for.
//!
//! This crate never picks the version, so it must compile against each of them: some fields
//! (like `Deployment.spec` from 1.37 on) are required in newer versions and optional in older.

/// A field that is `T` in some API versions and `Option<T>` in others.
pub(crate) trait MaybeOption<T> {
    /// The field holding `value`.
    fn wrap(value: T) -> Self;
    /// The value, if present.
    fn as_option(&self) -> Option<&T>;
}

impl<T> MaybeOption<T> for T {
    fn wrap(value: T) -> Self {
        value
    }
    fn as_option(&self) -> Option<&T> {
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
}
