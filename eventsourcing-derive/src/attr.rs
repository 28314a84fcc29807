use syn::{spanned::Spanned, Attribute, LitStr};

use crate::ctxt::Ctxt;

/// Options of `#[aggregate(...)]` on the struct.
#[derive(Default)]
pub(crate) struct AggregateAttrs {
    pub(crate) name: Option<LitStr>,
}

pub(crate) fn aggregate_attrs(cx: &mut Ctxt, attrs: &[Attribute]) -> AggregateAttrs {
    let mut out = AggregateAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("aggregate")) {
        let result = attr.parse_nested_meta(|meta| {
            // #[aggregate(name = "Widget")]
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if out.name.is_some() {
                    cx.error_spanned_by(&meta.path, "duplicate aggregate attribute `name`");
                } else {
                    out.name = Some(lit);
                }
                Ok(())
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
}

pub(crate) fn is_event_attr(attr: &Attribute) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == "event")
}

pub(crate) fn event_attrs(cx: &mut Ctxt, attr: &Attribute) -> EventAttrs {
    let mut out = EventAttrs {
        name: None,
        aliases: Vec::new(),
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
        if out.name.is_some() {
            cx.error_spanned_by(&meta.path, "duplicate event attribute `name`");
        } else {
            out.name = Some(lit);
        }
        Ok(())
    } else if meta.path.is_ident("alias") {
        // #[event(alias = "NameChanged")]: an earlier stored name, still read
        let lit: LitStr = meta.value()?.parse()?;
        out.aliases.push(lit);
        Ok(())
    } else {
        let key = meta.path.to_token_stream_string();
        Err(syn::Error::new(
            meta.path.span(),
            format!("unknown event attribute `{key}`"),
        ))
    }
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
