//! One registration per plugin, and a provider for the common case.
//!
//! A plugin states its service name, state type and state version once, in [`crate::plugin!`];
//! everything that must agree with them is derived from that one statement:
//! - the typetag tag of the state (`"{service}/{version}"`, built by `concat!`, so a tag that
//!   disagrees with the version cannot be written);
//! - the crate's `SERVICE` and `STATE_VERSION` constants;
//! - the [`crate::Registration`] in the `inventory` registry, which carries the version and
//!   the operations the service answers (the README's service table is checked against them);
//! - through [`CellProvider`], the whole [`StateProvider`]: `service()` and `state_version()`
//!   come from the state type ([`StateTag`]), so they cannot disagree with the tag either.
//!
//! ```ignore
//! cryopod::plugin! {
//!     service: "notes",
//!     state: NotesState,
//!     version: 2,
//!     routes: &[cryopod::Route::JsonTarget("Notes.")],
//!     operations: &["CreateNotebook", "PutNote"],
//!     build: |ctx| std::sync::Arc::new(NotesService::new(ctx)),
//! }
//!
//! impl cryopod::CellProvider for NotesService {
//!     type State = NotesState;
//!     fn cell(&self) -> &cryopod::StateCell<NotesState> {
//!         &self.state
//!     }
//! }
//! ```

use async_trait::async_trait;

use crate::error::ProviderError;
use crate::scope::ScopeFilter;
use crate::service::{StateCell, StateProvider};
use crate::state::{ScopedState, ServiceState};

/// The service and version a state type was declared with, known at compile time.
///
/// Implemented by [`crate::service_state!`] (and so by [`crate::plugin!`]) next to the typetag
/// registration. Why a separate trait: [`ServiceState`] is used as a trait object and cannot
/// carry constants, but the provider and the registration need the version as a constant so
/// that nothing else has to state it again.
pub trait StateTag {
    /// The service name (`"notes"`).
    const SERVICE: &'static str;
    /// The schema version (`2`).
    const VERSION: u32;
    /// `"{SERVICE}/{VERSION}"`, the typetag name bundles store.
    const TAG: &'static str;
}

/// The provider of a service whose whole state lives in one [`StateCell`]: implementing this
/// (the cell, and hooks only if something is derived at run time) gives [`StateProvider`].
///
/// Capture is the cell's O(1) copy, restore installs the state, reset installs an empty one.
/// The hooks exist for the services that keep more than the cell: clocks stamped into a
/// capture and rebased on restore (SQS), indexes rebuilt after a restore (S3, DynamoDB).
#[async_trait]
pub trait CellProvider: Send + Sync + 'static {
    /// The service's state; its [`StateTag`] names the service and version.
    type State: ScopedState + ServiceState + StateTag;

    /// The cell holding the live state.
    fn cell(&self) -> &StateCell<Self::State>;

    /// Adjusts a captured copy before it leaves the service (stamps a clock). Runs while the
    /// capture barrier is held, so keep it O(1) in the state's size.
    fn on_capture(&self, _state: &mut Self::State) {}

    /// Adjusts an incoming state before it is installed (rebases clocks on the time elapsed
    /// since its capture). Failing leaves the running state untouched and rolls the apply
    /// back.
    fn before_install(&self, _state: &mut Self::State) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Re-creates what the installed state implies at run time (indexes, timers, waking
    /// waiters); `state` is what was just installed. Must not write through the cell: the
    /// runtime holds the capture barrier during a restore.
    fn after_restore(&self, _state: &Self::State) {}
}

#[async_trait]
impl<T: CellProvider> StateProvider for T {
    fn service(&self) -> &'static str {
        <T::State as StateTag>::SERVICE
    }

    fn state_version(&self) -> u32 {
        <T::State as StateTag>::VERSION
    }

    async fn snapshot(&self, filter: &ScopeFilter) -> Result<Box<dyn ServiceState>, ProviderError> {
        let captured = self.cell().capture(filter);
        let mut state: T::State = captured.downcast(<T::State as StateTag>::SERVICE)?;
        self.on_capture(&mut state);
        Ok(Box::new(state))
    }

    async fn restore(&self, state: Box<dyn ServiceState>) -> Result<(), ProviderError> {
        let mut state: T::State = state.downcast(<T::State as StateTag>::SERVICE)?;
        self.before_install(&mut state)?;
        // A clone of persistent maps is O(1): the hook sees exactly what was installed.
        let installed = state.clone();
        self.cell().install(Box::new(state))?;
        self.after_restore(&installed);
        Ok(())
    }

    fn empty_state(&self) -> Box<dyn ServiceState> {
        Box::new(T::State::default())
    }
}

/// Whether two strings are equal, in a constant: what makes a wrong tag a compile error.
#[doc(hidden)]
pub const fn __same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Registers a plugin: its service name, state, version, routes, operations and builder,
/// each stated once. The last item of a plugin crate.
///
/// ```ignore
/// cryopod::plugin! {
///     service: "notes",
///     state: NotesState,
///     version: 2,
///     routes: &[cryopod::Route::JsonTarget("Notes."), cryopod::Route::SigningName("notes")],
///     operations: &["CreateNotebook", "DeleteNotebook", "PutNote"],
///     build: |ctx| std::sync::Arc::new(NotesService::new(ctx)),
/// }
/// ```
/// expands to `pub const SERVICE: &str`, `pub const STATE_VERSION: u32`, the state's
/// [`crate::service_state!`] with the tag `concat!(service, "/", version)`, and the
/// `inventory::submit!` of the [`crate::Registration`]. The calling crate must depend on
/// `typetag` (the state registration names `typetag::` paths).
///
/// Without `version:`, the state's `service_state!` is written elsewhere (beside the state
/// type) and the version is taken from it; the macro then checks at compile time that the
/// state was declared for this service.
///
/// `operations` lists the operations the service answers, in AWS's names: the README's
/// table of services is checked against it, and each plugin tests that every listed
/// operation is dispatched.
#[macro_export]
macro_rules! plugin {
    (
        service: $svc:literal,
        state: $state:ty,
        version: $ver:literal,
        routes: $routes:expr,
        operations: $ops:expr,
        build: $build:expr $(,)?
    ) => {
        $crate::service_state!($state, service = $svc, version = $ver);
        $crate::plugin! {
            service: $svc,
            state: $state,
            routes: $routes,
            operations: $ops,
            build: $build,
        }
    };
    (
        service: $svc:literal,
        state: $state:ty,
        routes: $routes:expr,
        operations: $ops:expr,
        build: $build:expr $(,)?
    ) => {
        /// The service name, also its signing name; stated once, in `cryopod::plugin!`.
        pub const SERVICE: &str = $svc;
        /// The state version this build writes, from the state's declaration.
        pub const STATE_VERSION: u32 = <$state as $crate::plugin::StateTag>::VERSION;
        const _: () = ::std::assert!(
            $crate::plugin::__same_str(<$state as $crate::plugin::StateTag>::SERVICE, $svc),
            ::std::concat!(
                "the state given to cryopod::plugin! is not declared for service `",
                $svc,
                "`"
            ),
        );
        $crate::__private::inventory::submit! {
            $crate::Registration {
                service: $svc,
                state_version: ::std::option::Option::Some(STATE_VERSION),
                routes: $routes,
                operations: $ops,
                build: $build,
            }
        }
    };
}
