//! Procedural macros for `eventsourcing`: `#[derive(Aggregate)]` on the state struct,
//! `#[events]` on the `impl` block that holds its event methods, and `#[event]` on each event
//! method. Use them through the facade crate: `use eventsourcing::prelude::*;`.
//!
//! An attribute on a single method cannot see the other methods, so the generated event enum,
//! its codec and the replay dispatch are written by `#[events]`, which sees them all.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Makes a struct with a `meta: Meta<Self>` field an event-sourced aggregate.
///
/// Accepted attributes: `#[aggregate(name = "Widget")]`, the stored type name (default: the
/// struct's name), and `#[aggregate(snapshot_every = 10)]`, a snapshot every that many events.
///
/// The struct also derives serde's `Serialize` and `Deserialize`, because snapshots store its
/// state. The code generated here names serde through the facade, but serde's own derive looks
/// for a crate called `serde`; a project without that dependency points it at the facade's copy:
///
/// ```text
/// #[derive(Aggregate, Debug, Serialize, Deserialize)]
/// #[serde(crate = "eventsourcing::serde")]
/// struct WidgetRegistryEndpoint { meta: Meta<Self>, /* ... */ }
/// ```
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive_aggregate(&input).into()
}

/// Turns the `#[event]` methods of an aggregate's `impl` block into recorded events.
#[proc_macro_attribute]
pub fn events(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = syn::parse_macro_input!(input as syn::ItemImpl);
    expand::events(args, item).into()
}

/// Marks an event method inside an `#[events]` impl block.
///
/// Forms: `#[event]` (name = the method name in PascalCase), `#[event("NameUpdated")]`,
/// `#[event(name = "NameUpdated")]`, and `alias = "OldName"` (repeatable) to keep reading
/// events stored under an earlier name.
///
/// # An event's body records nothing
///
/// The body runs live when the method is called, and again on every load, when the stored event
/// is replayed. So it must rebuild its change from the event's fields alone, and must not call
/// other event methods: live, each nested call would store an event of its own, and replay
/// would apply it twice (once inside the body, once as the stored event), so the reloaded state
/// would differ from the live one. Call the event methods one after another from a command
/// method (any method without `#[event]`) instead:
///
/// ```text
/// #[event] fn bump(&mut self) { self.n += 1; }
/// fn bump_twice(&mut self) { self.bump(); self.bump(); }  // a command: records two `Bump`s
/// ```
///
/// `#[events]` refuses the calls it can see in an event's body (`self.bump()`, `Self::bump(self)`,
/// `Counter::bump`, also inside closures, blocks and macro arguments). A call it cannot see,
/// through a helper function or another type, is caught when it runs:
///
/// - Live, it panics, naming both methods, before the nested method changes or records
///   anything. It is a programming error, as certain as a `RefCell` borrowed twice: the first
///   test that takes the path finds it. Quietly applying without recording was the other
///   choice; it keeps live and replayed state equal too, but hides the mistake, and the events
///   the author meant to record would never reach projections.
/// - During replay it never panics, so stored events always load. Events written before this
///   guard already hold each nested event as an event of their own, which replay applies in its
///   turn, so a nested call inside a replayed event does nothing; inside a replayed creation
///   event it applies without recording, because creation never stored the events recorded on
///   the value it was building. Either way replay rebuilds the state those events had live.
///
/// The guard is a thread-local flag: set and restored once per recorded event and once per load.
#[proc_macro_attribute]
pub fn event(_args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let err = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[event]` only works on methods inside an `impl` block marked `#[events]`",
    )
    .into_compile_error();
    quote::quote!(#err #input).into()
}
