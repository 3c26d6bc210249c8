//! A `run` step on the default bridge network (`network "bridge"`): a namespace, veth and
//! address of its own for as long as the step runs.

use super::Ctx;
use crate::digest::Digest;

/// A `run` step's place on the default bridge network, released when dropped.
pub(super) struct StepNetwork<'a> {
    store: &'a crate::store::Store,
    pub(super) endpoint: crate::net::Endpoint,
}

impl<'a> StepNetwork<'a> {
    pub(super) fn attach(
        ctx: &'a Ctx,
        netns: &std::path::Path,
    ) -> Result<StepNetwork<'a>, crate::net::NetError> {
        // An id of its own: the step is not a container (`gc` releases it once no build runs,
        // it holds the store lock meanwhile).
        let id = Digest::of(
            format!(
                "build-step {} {} {:?}",
                crate::time::now_rfc3339_nanos(),
                std::process::id(),
                std::thread::current().id()
            )
            .as_bytes(),
        )
        .hex()
        .to_owned();
        let endpoint = crate::net::attach(ctx.store, crate::net::DEFAULT, &id, None, &[], netns)?;
        Ok(StepNetwork {
            store: ctx.store,
            endpoint,
        })
    }
}

impl Drop for StepNetwork<'_> {
    fn drop(&mut self) {
        let _ = crate::net::release(self.store, &self.endpoint.container);
    }
}
