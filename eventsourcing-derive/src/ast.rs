//! The parsed model of an `#[events]` impl block, with every rule checked.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{
    FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, ReturnType, Type, Visibility,
};

use crate::{attr, ctxt::Ctxt};

/// One `#[event]` method.
pub(crate) struct EventMethod {
    /// The method as written, without its `#[event]` attribute.
    pub(crate) func: ImplItemFn,
    /// The stored event name.
    pub(crate) name: LitStr,
    /// Earlier names still read.
    pub(crate) aliases: Vec<LitStr>,
    /// The event's fields, from the method's arguments.
    pub(crate) fields: Vec<Field>,
    /// A constructor-style method (no `self`, returns `Self`): the creation event.
    pub(crate) creator: bool,
    /// The payload's schema version.
    pub(crate) version: u32,
    /// Turns older payloads into the current one.
    pub(crate) upcast: Option<syn::Path>,
}

pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) mutable: bool,
    pub(crate) ty: Type,
}

impl EventMethod {
    pub(crate) fn variant(&self) -> Ident {
        Ident::new(&self.name.value(), self.name.span())
    }
}

/// The whole impl block.
pub(crate) struct EventsImpl {
    pub(crate) item: ItemImpl,
    pub(crate) self_ident: Ident,
    pub(crate) methods: Vec<EventMethod>,
    /// Indexes into `item.items` of the event methods, in order.
    pub(crate) method_slots: Vec<usize>,
}

pub(crate) fn parse(cx: &mut Ctxt, mut item: ItemImpl) -> Option<EventsImpl> {
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "`#[events]` goes on the aggregate's own `impl` block, not on a trait impl",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(&item.generics, "aggregates cannot be generic");
    }
    let self_ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(self_ident) = self_ident else {
        cx.error_spanned_by(
            &item.self_ty,
            "`#[events]` needs an `impl` of a named struct",
        );
        return None;
    };

    let mut methods = Vec::new();
    let mut method_slots = Vec::new();
    for (slot, impl_item) in item.items.iter_mut().enumerate() {
        let ImplItem::Fn(func) = impl_item else {
            continue;
        };
        let Some(pos) = func.attrs.iter().position(attr::is_event_attr) else {
            continue;
        };
        let event_attr = func.attrs.remove(pos);
        if let Some(extra) = func.attrs.iter().find(|a| attr::is_event_attr(a)) {
            cx.error_spanned_by(extra, "duplicate `#[event]` attribute");
        }
        let attrs = attr::event_attrs(cx, &event_attr);
        if let Some(method) = parse_method(cx, func.clone(), attrs, &self_ident) {
            methods.push(method);
            method_slots.push(slot);
        }
    }

    check_names(cx, &methods);
    if !methods.iter().any(|m| m.creator) {
        cx.error_spanned_by(
            &item.self_ty,
            format!(
                "`{self_ident}` has no creation event: add an `#[event]` method without `self` that returns `Self`, e.g. `#[event] fn create(...) -> Self`"
            ),
        );
    }
    Some(EventsImpl {
        item,
        self_ident,
        methods,
        method_slots,
    })
}

fn parse_method(
    cx: &mut Ctxt,
    func: ImplItemFn,
    attrs: attr::EventAttrs,
    self_ident: &Ident,
) -> Option<EventMethod> {
    let sig = &func.sig;
    let method = &sig.ident;
    let before = cx_len(cx);
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            format!("event method `{method}` cannot be generic: an event's fields need concrete types to be stored"),
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        cx.error_spanned_by(asyncness, format!("event method `{method}` cannot be async: applying an event must be immediate and deterministic"));
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(
            constness,
            format!("event method `{method}` cannot be const"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "event methods cannot be variadic");
    }

    let mut creator = true;
    let mut fields = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(recv) => {
                creator = false;
                let ok = recv.reference.is_some()
                    && recv.mutability.is_some()
                    && recv.colon_token.is_none()
                    && recv.reference.as_ref().is_some_and(|(_, lt)| lt.is_none());
                if !ok {
                    cx.error_spanned_by(
                        recv,
                        format!("event method `{method}` must take `&mut self`: it applies the event to the aggregate (a creation event takes no `self` and returns `Self`)"),
                    );
                }
                if i != 0 {
                    cx.error_spanned_by(recv, "`self` must come first");
                }
            }
            FnArg::Typed(pat_type) => {
                let ident = match &*pat_type.pat {
                    Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                        Some((p.ident.clone(), p.mutability.is_some()))
                    }
                    other => {
                        cx.error_spanned_by(other, "event method arguments must be plain names: each becomes a field of the event");
                        None
                    }
                };
                check_field_type(cx, &pat_type.ty);
                if let Some((ident, mutable)) = ident {
                    fields.push(Field {
                        ident,
                        mutable,
                        ty: (*pat_type.ty).clone(),
                    });
                }
            }
        }
    }

    match (&sig.output, creator) {
        (ReturnType::Default, false) => {}
        (ReturnType::Type(_, ty), false) => {
            if !is_unit(ty) {
                cx.error_spanned_by(
                    ty,
                    format!("event method `{method}` cannot return a value: applying an event cannot fail or produce a result, because replaying stored events must always succeed. Validate in a command method that returns `Result` and then calls `{method}`"),
                );
            }
        }
        (ReturnType::Type(_, ty), true) if returns_self(ty, self_ident) => {}
        (output, true) => {
            let msg = format!("event method `{method}` has no `self`, so it is a creation event and must return `Self`; an event method that changes an existing aggregate takes `&mut self`");
            match output {
                ReturnType::Default => cx.error_spanned_by(method, msg),
                ReturnType::Type(_, ty) => cx.error_spanned_by(ty, msg),
            }
        }
    }

    let name = attrs
        .name
        .unwrap_or_else(|| LitStr::new(&pascal_case(&method.to_string()), method.span()));
    if !is_identifier(&name.value()) {
        cx.error_spanned_by(
            &name,
            format!(
                "event name `{}` must be a Rust identifier (letters, digits, `_`)",
                name.value()
            ),
        );
    }
    let version = attrs
        .version
        .as_ref()
        .and_then(|l| l.base10_parse::<u32>().ok())
        .unwrap_or(1);
    if let (Some(upcast), 1) = (&attrs.upcast, version) {
        cx.error_spanned_by(
            upcast,
            "`upcast` needs `version = N` with N above 1: there is no older schema version to upcast from",
        );
    }
    if cx_len(cx) != before {
        return None;
    }
    Some(EventMethod {
        func,
        name,
        aliases: attrs.aliases,
        fields,
        creator,
        version,
        upcast: attrs.upcast,
    })
}

fn cx_len(cx: &Ctxt) -> usize {
    cx.len()
}

fn check_field_type(cx: &mut Ctxt, ty: &Type) {
    struct Finder<'a> {
        cx: &'a mut Ctxt,
        whole: &'a Type,
        reported: bool,
    }
    impl<'ast> syn::visit::Visit<'ast> for Finder<'_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            if !self.reported {
                self.reported = true;
                let hint = match &*r.elem {
                    Type::Path(p) if p.path.is_ident("str") => " (take `String` instead of `&str`)",
                    Type::Slice(_) => " (take a `Vec` instead of a slice)",
                    _ => "",
                };
                self.cx.error_spanned_by(
                    self.whole,
                    format!("event fields must be owned values that can be stored, not references{hint}"),
                );
            }
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            if !self.reported {
                self.reported = true;
                self.cx.error_spanned_by(
                    t,
                    "event fields need concrete types: `impl Trait` cannot be stored",
                );
            }
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if !self.reported {
                self.reported = true;
                self.cx.error_spanned_by(
                    l,
                    "event fields cannot borrow: lifetimes are not supported in event methods",
                );
            }
        }
    }
    let mut finder = Finder {
        cx,
        whole: ty,
        reported: false,
    };
    syn::visit::visit_type(&mut finder, ty);
}

fn check_names(cx: &mut Ctxt, methods: &[EventMethod]) {
    let mut seen: Vec<(String, Span)> = Vec::new();
    for m in methods {
        for lit in std::iter::once(&m.name).chain(&m.aliases) {
            let value = lit.value();
            if seen.iter().any(|(s, _)| *s == value) {
                cx.error_spanned_by(
                    lit,
                    format!("duplicate event name `{value}`: each event (and alias) needs its own stored name"),
                );
            } else {
                seen.push((value, lit.span()));
            }
        }
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn returns_self(ty: &Type, self_ident: &Ident) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.is_ident("Self") || p.path.is_ident(self_ident)
        }
        _ => false,
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `update_name` → `UpdateName`.
pub(crate) fn pascal_case(s: &str) -> String {
    s.trim_start_matches("r#")
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The visibility the generated event enum gets: that of the creation method.
pub(crate) fn enum_visibility(methods: &[EventMethod]) -> Visibility {
    methods
        .iter()
        .find(|m| m.creator)
        .map(|m| m.func.vis.clone())
        .unwrap_or(Visibility::Inherited)
}

/// Tokens of a type as a normalized string (for fingerprints).
pub(crate) fn type_string(ty: &Type) -> String {
    ty.to_token_stream().to_string()
}
