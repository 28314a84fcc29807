//! Code generation. Generated code names everything by absolute path (`::eventsourcing::…`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{spanned::Spanned, Data, DeriveInput, Fields, ImplItem, ItemImpl, Type};

use crate::{
    ast::{self, EventMethod, EventsImpl},
    attr,
    ctxt::Ctxt,
    valid,
};

// ---------------------------------------------------------------------------------------------
// #[derive(Aggregate)]

pub(crate) fn derive_aggregate(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let ident = &input.ident;
    let attrs = attr::aggregate_attrs(&mut cx, &input.attrs);
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &input.generics,
            "aggregates cannot be generic: stored events and snapshots need one concrete type",
        );
    }
    let mut meta_field = None;
    let mut state_fields = Vec::new();
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => {
                for field in &named.named {
                    if is_meta_type(&field.ty) {
                        if meta_field.is_some() {
                            cx.error_spanned_by(
                                field,
                                "an aggregate has exactly one `Meta<Self>` field",
                            );
                        } else {
                            meta_field = field.ident.clone();
                        }
                    } else {
                        state_fields.push(field);
                    }
                }
            }
            _ => cx.error_spanned_by(
                ident,
                "`#[derive(Aggregate)]` needs a struct with named fields",
            ),
        },
        _ => cx.error_spanned_by(
            ident,
            "`#[derive(Aggregate)]` needs a struct with named fields",
        ),
    }
    if meta_field.is_none()
        && matches!(&input.data, Data::Struct(s) if matches!(s.fields, Fields::Named(_)))
    {
        cx.error_spanned_by(
            ident,
            format!("aggregate `{ident}` needs a field `meta: Meta<Self>` to hold its id, version and pending events (set it to `Meta::default()` in the creation event)"),
        );
    }
    if let Err(err) = cx.check() {
        if !input.generics.params.is_empty() {
            // No fallback impl can be written for a generic struct without more errors.
            return err.into_compile_error();
        }
        return derive_fallback(ident, err);
    }
    let meta_field = meta_field.unwrap_or_else(|| format_ident!("meta"));
    let type_name = attrs
        .name
        .map(|l| l.value())
        .unwrap_or_else(|| ident.to_string());
    let snapshot_every = attrs.snapshot_every.map(|n| {
        quote!(const SNAPSHOT_EVERY: ::core::option::Option<u64> = ::core::option::Option::Some(#n);)
    });
    let fingerprint = fingerprint(state_fields.iter().map(|f| {
        let name = f
            .ident
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        format!("{name}:{}", ast::type_string(&f.ty))
    }));
    quote! {
        #[automatically_derived]
        impl ::eventsourcing::Aggregate for #ident {
            const TYPE_NAME: &'static str = #type_name;
            const STATE_FINGERPRINT: u64 = #fingerprint;
            #snapshot_every

            #[inline]
            fn meta(&self) -> &::eventsourcing::Meta<Self> {
                &self.#meta_field
            }

            #[inline]
            fn meta_mut(&mut self) -> &mut ::eventsourcing::Meta<Self> {
                &mut self.#meta_field
            }
        }
    }
}

fn derive_fallback(ident: &syn::Ident, err: syn::Error) -> TokenStream {
    let err = err.into_compile_error();
    // A minimal impl beside the error, so the user sees the error and not a cascade of
    // "trait not implemented" elsewhere.
    quote! {
        #err
        #[automatically_derived]
        impl ::eventsourcing::Aggregate for #ident {
            const TYPE_NAME: &'static str = "";
            const STATE_FINGERPRINT: u64 = 0;
            fn meta(&self) -> &::eventsourcing::Meta<Self> { ::core::unimplemented!() }
            fn meta_mut(&mut self) -> &mut ::eventsourcing::Meta<Self> { ::core::unimplemented!() }
        }
    }
}

fn is_meta_type(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Meta"),
        _ => false,
    }
}

/// FNV-1a over the fields' names and type tokens.
fn fingerprint(parts: impl Iterator<Item = String>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0u8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

// ---------------------------------------------------------------------------------------------
// #[events]

pub(crate) fn events(args: TokenStream, item: ItemImpl) -> TokenStream {
    let mut cx = Ctxt::default();
    if !args.is_empty() {
        cx.error_spanned_by(&args, "`#[events]` takes no arguments");
    }
    let original = item.clone();
    let parsed = ast::parse(&mut cx, item);
    if let Some(parsed) = &parsed {
        valid::check_event_bodies(&mut cx, parsed);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => expand_events(parsed),
        (Err(err), parsed) => events_fallback(err, parsed.map_or(original, |p| p.item)),
        (Ok(()), None) => TokenStream::new(),
    }
}

fn events_fallback(err: syn::Error, mut item: ItemImpl) -> TokenStream {
    let err = err.into_compile_error();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(f) = impl_item {
            f.attrs.retain(|a| !attr::is_event_attr(a));
        }
    }
    let self_ty = &item.self_ty;
    quote! {
        #err
        #item
        #[automatically_derived]
        impl ::eventsourcing::EventSourced for #self_ty {
            type Event = ::eventsourcing::__private::NoEvents;
            fn create_from(event: Self::Event) -> ::core::result::Result<Self, Self::Event> { match event {} }
            fn apply(&mut self, event: Self::Event) -> ::core::result::Result<(), Self::Event> { match event {} }
        }
    }
}

fn expand_events(parsed: EventsImpl) -> TokenStream {
    let EventsImpl {
        mut item,
        self_ident,
        methods,
        method_slots,
    } = parsed;
    let self_ty = item.self_ty.clone();
    let enum_ident = format_ident!("{}Event", self_ident);
    let vis = ast::enum_visibility(&methods);

    // Rewrite each event method into a public recording method and a hidden apply function.
    let mut extra_items: Vec<ImplItem> = Vec::new();
    for (method, slot) in methods.iter().zip(&method_slots) {
        let (public, apply) = rewrite_method(method, &enum_ident);
        item.items[*slot] = public;
        extra_items.extend(apply);
    }
    item.items.extend(extra_items);

    let variants = methods.iter().map(|m| {
        let variant = m.variant();
        let mut docs: Vec<_> = m
            .func
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .map(|a| quote!(#a))
            .collect();
        if docs.is_empty() {
            let doc = format!(
                "The `{}` event, recorded by [`{}::{}`].",
                m.name.value(),
                self_ident,
                m.func.sig.ident
            );
            docs.push(quote!(#[doc = #doc]));
        }
        let method = &m.func.sig.ident;
        let fields = m.fields.iter().map(|f| {
            let (ident, ty) = (&f.ident, &f.ty);
            let doc = format!("The `{ident}` argument of `{method}`.");
            quote!(#[doc = #doc] #ident: #ty)
        });
        quote! {
            #(#docs)*
            #variant { #(#fields),* }
        }
    });

    let names: Vec<_> = methods
        .iter()
        .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
        .collect();
    let name_arms = methods.iter().map(|m| {
        let variant = m.variant();
        let name = &m.name;
        quote!(Self::#variant { .. } => #name)
    });
    let version_arms = methods.iter().map(|m| {
        let variant = m.variant();
        let version = m.version;
        quote!(Self::#variant { .. } => #version)
    });
    let encode_arms = methods.iter().map(encode_arm);
    let decode_arms = methods.iter().map(|m| decode_arm(m, &self_ty));
    let create_arms = methods.iter().filter(|m| m.creator).map(|m| {
        let variant = m.variant();
        let apply = apply_ident(m);
        let idents: Vec<_> = m.fields.iter().map(|f| &f.ident).collect();
        quote!(#enum_ident::#variant { #(#idents),* } => ::core::result::Result::Ok(Self::#apply(#(#idents),*)))
    });
    let apply_arms = methods.iter().filter(|m| !m.creator).map(|m| {
        let variant = m.variant();
        let apply = apply_ident(m);
        let idents: Vec<_> = m.fields.iter().map(|f| &f.ident).collect();
        quote! {
            #enum_ident::#variant { #(#idents),* } => {
                Self::#apply(self, #(#idents),*);
                ::core::result::Result::Ok(())
            }
        }
    });
    let assertions = methods.iter().flat_map(|m| &m.fields).map(|f| {
        let ty = &f.ty;
        quote_spanned!(ty.span()=> __assert_field::<#ty>();)
    });
    let enum_doc = format!(
        "The events of [`{self_ident}`], generated by `#[events]` from its `#[event]` methods."
    );

    quote! {
        #[doc = #enum_doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone)]
        #[allow(clippy::enum_variant_names)]
        #vis enum #enum_ident {
            #(#variants,)*
        }

        const _: () = {
            fn __assert_field<T: ::core::clone::Clone + ::core::fmt::Debug + ::eventsourcing::__private::serde::Serialize + ::eventsourcing::__private::serde::de::DeserializeOwned>() {}
            #[allow(dead_code)]
            fn __assert_fields() {
                #(#assertions)*
            }
        };

        #[automatically_derived]
        impl ::eventsourcing::DomainEvent for #enum_ident {
            const NAMES: &'static [&'static str] = &[#(#names),*];

            fn name(&self) -> &'static str {
                match self {
                    #(#name_arms,)*
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    #(#version_arms,)*
                }
            }

            fn encode<C: ::eventsourcing::Codec>(
                &self,
                codec: &C,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::eventsourcing::CodecError> {
                match self {
                    #(#encode_arms)*
                }
            }

            fn decode<C: ::eventsourcing::Codec>(
                codec: &C,
                name: &str,
                schema_version: u32,
                payload: &[u8],
            ) -> ::core::result::Result<Self, ::eventsourcing::EventDecodeError> {
                match name {
                    #(#decode_arms)*
                    other => ::core::result::Result::Err(::eventsourcing::EventDecodeError::UnknownType {
                        name: ::std::string::ToString::to_string(other),
                        aggregate: <#self_ty as ::eventsourcing::Aggregate>::TYPE_NAME,
                        known: <Self as ::eventsourcing::DomainEvent>::NAMES,
                    }),
                }
            }
        }

        #[automatically_derived]
        impl ::eventsourcing::EventSourced for #self_ty {
            type Event = #enum_ident;

            #[allow(unreachable_patterns)]
            fn create_from(event: #enum_ident) -> ::core::result::Result<Self, #enum_ident> {
                match event {
                    #(#create_arms,)*
                    other => ::core::result::Result::Err(other),
                }
            }

            #[allow(unreachable_patterns)]
            fn apply(&mut self, event: #enum_ident) -> ::core::result::Result<(), #enum_ident> {
                match event {
                    #(#apply_arms)*
                    other => ::core::result::Result::Err(other),
                }
            }
        }

        #item
    }
}

fn apply_ident(m: &EventMethod) -> syn::Ident {
    format_ident!("__es_apply_{}", m.func.sig.ident)
}

/// The public method records the event; the user's body moves into a hidden apply function
/// that replay calls too, so recording and replaying run the same code. The event gets clones
/// of the arguments before the body consumes them; `record` runs the body under the guard that
/// stops it from recording other events.
fn rewrite_method(m: &EventMethod, enum_ident: &syn::Ident) -> (ImplItem, Option<ImplItem>) {
    let func = &m.func;
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let apply = apply_ident(m);
    let variant = m.variant();
    let attrs = func.attrs.iter().filter(|a| !a.path().is_ident("inline"));
    let idents: Vec<_> = m.fields.iter().map(|f| &f.ident).collect();
    let params: Vec<_> = m
        .fields
        .iter()
        .map(|f| {
            let (i, ty) = (&f.ident, &f.ty);
            quote!(#i: #ty)
        })
        .collect();
    let apply_params = m.fields.iter().map(|f| {
        let (i, ty) = (&f.ident, &f.ty);
        if f.mutable {
            quote!(mut #i: #ty)
        } else {
            quote!(#i: #ty)
        }
    });
    let body = &func.block;
    let clones: Vec<_> = idents
        .iter()
        .map(|i| quote!(::core::clone::Clone::clone(&#i)))
        .collect();
    // The name as written, for the run-time guard's message (`r#type` reads `type`).
    let method_name = ident.to_string().trim_start_matches("r#").to_owned();
    if m.creator {
        let with_id = format_ident!("{}_with_id", ident);
        let output = &func.sig.output;
        let with_id_doc = format!(
            "Like [`Self::{ident}`], with a chosen id (e.g. from `eventsourcing::id_from_name`)."
        );
        let public: ImplItem = syn::parse_quote! {
            #(#attrs)*
            #vis fn #ident(#(#params),*) #output {
                Self::#with_id(::eventsourcing::new_id(), #(#idents),*)
            }
        };
        let extra: ImplItem = syn::parse_quote! {
            #[doc = #with_id_doc]
            #vis fn #with_id(id: ::eventsourcing::Uuid, #(#params),*) -> Self {
                ::eventsourcing::__private::record_creation(
                    id,
                    #method_name,
                    #enum_ident::#variant { #(#idents: #clones),* },
                    move || Self::#apply(#(#idents),*),
                )
            }
        };
        let apply_fn: ImplItem = syn::parse_quote! {
            #[doc(hidden)]
            #[allow(clippy::too_many_arguments)]
            fn #apply(#(#apply_params),*) -> Self #body
        };
        // Two extra items: the `_with_id` constructor and the apply function.
        (public, Some(merge(extra, apply_fn)))
    } else {
        let public: ImplItem = syn::parse_quote! {
            #(#attrs)*
            #vis fn #ident(&mut self, #(#params),*) {
                ::eventsourcing::__private::record(
                    self,
                    #method_name,
                    #enum_ident::#variant { #(#idents: #clones),* },
                    move |__es_self: &mut Self| Self::#apply(__es_self, #(#idents),*),
                );
            }
        };
        let apply_fn: ImplItem = syn::parse_quote! {
            #[doc(hidden)]
            #[allow(clippy::too_many_arguments)]
            fn #apply(&mut self, #(#apply_params),*) #body
        };
        (public, Some(apply_fn))
    }
}

/// Two impl items as one verbatim item.
fn merge(a: ImplItem, b: ImplItem) -> ImplItem {
    ImplItem::Verbatim(quote!(#a #b))
}

fn encode_arm(m: &EventMethod) -> TokenStream {
    let variant = m.variant();
    let idents: Vec<_> = m.fields.iter().map(|f| &f.ident).collect();
    let tys: Vec<_> = m.fields.iter().map(|f| &f.ty).collect();
    let lifetime = if idents.is_empty() {
        quote!()
    } else {
        quote!(<'__a>)
    };
    quote! {
        Self::#variant { #(#idents),* } => {
            #[derive(::eventsourcing::__private::serde::Serialize)]
            #[serde(crate = "::eventsourcing::__private::serde")]
            struct __Payload #lifetime {
                #(#idents: &'__a #tys,)*
            }
            codec.encode(&__Payload { #(#idents),* })
        }
    }
}

fn decode_arm(m: &EventMethod, self_ty: &Type) -> TokenStream {
    let variant = m.variant();
    let names = std::iter::once(&m.name).chain(&m.aliases);
    let idents: Vec<_> = m.fields.iter().map(|f| &f.ident).collect();
    let tys: Vec<_> = m.fields.iter().map(|f| &f.ty).collect();
    let current = m.version;
    // `Self::f` in the attribute means the aggregate's `f`; the generated code runs in the
    // event enum's impl, where `Self` is the enum.
    let upcast = m.upcast.as_ref().map(|path| {
        let mut segments = path.segments.iter();
        match segments.next() {
            Some(first) if first.ident == "Self" && path.leading_colon.is_none() => {
                let rest = segments;
                quote!(<#self_ty>#(::#rest)*)
            }
            _ => quote!(#path),
        }
    });
    let older = match &upcast {
        Some(upcast) => quote! {{
            let value: ::eventsourcing::__private::serde_json::Value = codec.decode(payload)?;
            let upcast: fn(u32, ::eventsourcing::__private::serde_json::Value)
                -> ::core::option::Option<::eventsourcing::__private::serde_json::Value> = #upcast;
            match upcast(schema_version, value) {
                ::core::option::Option::Some(value) => {
                    ::eventsourcing::__private::serde_json::from_value(value)
                        .map_err(::eventsourcing::CodecError::new)?
                }
                ::core::option::Option::None => {
                    return ::core::result::Result::Err(::eventsourcing::EventDecodeError::NoUpcast {
                        found: schema_version,
                        current: #current,
                    })
                }
            }
        }},
        None => quote! {
            return ::core::result::Result::Err(::eventsourcing::EventDecodeError::NoUpcast {
                found: schema_version,
                current: #current,
            })
        },
    };
    let read = quote! {
        if schema_version == #current {
            codec.decode(payload)?
        } else if schema_version < #current {
            #older
        } else {
            return ::core::result::Result::Err(
                ::eventsourcing::EventDecodeError::UnsupportedSchemaVersion {
                    found: schema_version,
                    supported: #current,
                },
            );
        }
    };
    quote! {
        #(#names)|* => {
            #[derive(::eventsourcing::__private::serde::Deserialize)]
            #[serde(crate = "::eventsourcing::__private::serde")]
            struct __Payload {
                #(#idents: #tys,)*
            }
            let payload: __Payload = #read;
            ::core::result::Result::Ok(Self::#variant { #(#idents: payload.#idents),* })
        }
    }
}
