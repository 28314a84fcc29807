use syn::{spanned::Spanned, Attribute, LitStr};

use crate::ctxt::Ctxt;

/// Options of `#[aggregate(...)]` on the struct.
#[derive(Default)]
pub(crate) struct AggregateAttrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) snapshot_every: Option<syn::LitInt>,
}

pub(crate) fn aggregate_attrs(cx: &mut Ctxt, attrs: &[Attribute]) -> AggregateAttrs {
    let mut out = AggregateAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("aggregate")) {
        let result = attr.parse_nested_meta(|meta| {
            // #[aggregate(name = "Widget")]
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                set_once(cx, &meta.path, "aggregate", &mut out.name, lit);
                Ok(())
            } else if meta.path.is_ident("snapshot_every") {
                // #[aggregate(snapshot_every = 10)]
                let slot = &mut out.snapshot_every;
                at_least_one::<u64>(cx, &meta, "aggregate", slot, "`snapshot_every`")
            } else {
                let key = meta.path.to_token_stream_string();
                Err(meta.error(format!("unknown aggregate attribute `{key}`")))
            }
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    out
}

/// Options of `#[event(...)]` on a method.
pub(crate) struct EventAttrs {
    /// The stored name, if set.
    pub(crate) name: Option<LitStr>,
    /// Earlier stored names still read.
    pub(crate) aliases: Vec<LitStr>,
    /// The payload's schema version (1 when unset).
    pub(crate) version: Option<syn::LitInt>,
    /// The function that turns older payloads into the current one.
    pub(crate) upcast: Option<syn::Path>,
}

pub(crate) fn is_event_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "event")
}

pub(crate) fn event_attrs(cx: &mut Ctxt, attr: &Attribute) -> EventAttrs {
    let mut out = EventAttrs {
        name: None,
        aliases: Vec::new(),
        version: None,
        upcast: None,
    };
    // #[event]
    if matches!(attr.meta, syn::Meta::Path(_)) {
        return out;
    }
    let list = match attr.meta.require_list() {
        Ok(list) => list,
        Err(e) => {
            cx.syn_error(e);
            return out;
        }
    };
    // #[event("NameUpdated")] or #[event("NameUpdated", alias = "NameChanged")]
    let mut tokens = list.tokens.clone().into_iter().peekable();
    if let Some(proc_macro2::TokenTree::Literal(_)) = tokens.peek() {
        let parsed = list.parse_args_with(|input: syn::parse::ParseStream<'_>| {
            let lit: LitStr = input.parse()?;
            let rest = if input.peek(syn::Token![,]) {
                input.parse::<syn::Token![,]>()?;
                input.parse::<proc_macro2::TokenStream>()?
            } else {
                input.parse::<proc_macro2::TokenStream>()?
            };
            Ok((lit, rest))
        });
        match parsed {
            Ok((lit, rest)) => {
                out.name = Some(lit);
                if !rest.is_empty() {
                    let parser = syn::meta::parser(|meta| event_key(cx, &mut out, meta));
                    if let Err(e) = syn::parse::Parser::parse2(parser, rest) {
                        cx.syn_error(e);
                    }
                }
            }
            Err(e) => cx.syn_error(e),
        }
        return out;
    }
    if let Err(e) = attr.parse_nested_meta(|meta| event_key(cx, &mut out, meta)) {
        cx.syn_error(e);
    }
    out
}

fn event_key(
    cx: &mut Ctxt,
    out: &mut EventAttrs,
    meta: syn::meta::ParseNestedMeta<'_>,
) -> syn::Result<()> {
    if meta.path.is_ident("name") {
        // #[event(name = "NameUpdated")]
        let lit: LitStr = meta.value()?.parse()?;
        set_once(cx, &meta.path, "event", &mut out.name, lit);
        Ok(())
    } else if meta.path.is_ident("alias") {
        // #[event(alias = "NameChanged")]: an earlier stored name, still read
        let lit: LitStr = meta.value()?.parse()?;
        out.aliases.push(lit);
        Ok(())
    } else if meta.path.is_ident("version") {
        // #[event(version = 2)]: the schema version payloads are written with
        at_least_one::<u32>(cx, &meta, "event", &mut out.version, "an event's `version`")
    } else if meta.path.is_ident("upcast") {
        // #[event(version = 2, upcast = Self::upcast_renamed)]: fn(u32, serde_json::Value) -> Option<serde_json::Value>
        let path: syn::Path = meta.value()?.parse()?;
        set_once(cx, &meta.path, "event", &mut out.upcast, path);
        Ok(())
    } else {
        let key = meta.path.to_token_stream_string();
        Err(syn::Error::new(
            meta.path.span(),
            format!("unknown event attribute `{key}`"),
        ))
    }
}

/// Keeps the first value of the attribute key `key`; a second one is reported as a duplicate
/// `kind` (`aggregate`, `event`) attribute.
fn set_once<T>(cx: &mut Ctxt, key: &syn::Path, kind: &str, slot: &mut Option<T>, value: T) {
    if slot.is_some() {
        let name = key.to_token_stream_string();
        cx.error_spanned_by(key, format!("duplicate {kind} attribute `{name}`"));
    } else {
        *slot = Some(value);
    }
}

/// `key = N` of a `kind` attribute into `slot` (once, as [`set_once`]); `what` (the key, as
/// the message names it) must be a whole number of at least 1 that fits `T`, or that is
/// reported at the literal (which is kept, so that one mistake is one error).
fn at_least_one<T>(
    cx: &mut Ctxt,
    meta: &syn::meta::ParseNestedMeta<'_>,
    kind: &str,
    slot: &mut Option<syn::LitInt>,
    what: &str,
) -> syn::Result<()>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    let lit: syn::LitInt = meta.value()?.parse()?;
    if !matches!(lit.base10_parse::<T>(), Ok(n) if n != T::from(0)) {
        cx.error_spanned_by(&lit, format!("{what} must be a whole number of at least 1"));
    }
    set_once(cx, &meta.path, kind, slot, lit);
    Ok(())
}

trait PathString {
    fn to_token_stream_string(&self) -> String;
}

impl PathString for syn::Path {
    fn to_token_stream_string(&self) -> String {
        quote::ToTokens::to_token_stream(self)
            .to_string()
            .replace(' ', "")
    }
}
