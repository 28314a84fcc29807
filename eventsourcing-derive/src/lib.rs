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
