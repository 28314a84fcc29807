//! The widget registry's handlers: create, read (now or at a version), rename, history, and
//! the tenant listing from the read model.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use eventsourcing::{prelude::Aggregate, EventStore, Retry, Uuid};
use eventsourcing_axum::{precondition_failed, HttpError, Json, Path, Query};
use serde::Deserialize;

use crate::{
    read_model::Page,
    state::AppState,
    views::{
        bad_request, check_name, check_tenant, invalid, page_size, CreateEndpoint, EndpointView,
        EventView, HistoryPage, Rename, TenantPage,
    },
    widget::{WidgetRegistryEndpoint, WidgetRegistryEndpointEvent},
};

/// The endpoint as JSON with its version as a strong `ETag`.
fn endpoint_response(status: StatusCode, endpoint: &WidgetRegistryEndpoint) -> Response {
    let mut response = (status, Json(EndpointView::from(endpoint))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", endpoint.version())) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `POST /endpoints`: registers an endpoint; 201 with `Location` and `ETag: "1"`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateEndpoint>,
) -> Result<Response, HttpError> {
    body.check()?;
    let endpoint = WidgetRegistryEndpoint::create(body.url, body.name, body.tenant_id);
    let endpoint = state.app().create(endpoint).await?;
    let mut response = endpoint_response(StatusCode::CREATED, &endpoint);
    if let Ok(location) = HeaderValue::from_str(&format!("/endpoints/{}", endpoint.id())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AtVersion {
    version: Option<u64>,
}

/// `GET /endpoints/{id}[?version=N]`: the endpoint now, or as it was at version `N`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(at): Query<AtVersion>,
) -> Result<Response, HttpError> {
    let repository = state.app().repository();
    let endpoint: WidgetRegistryEndpoint = match at.version {
        None => repository.get(id).await?,
        Some(0) => return Err(bad_request("version starts at 1").into()),
        Some(v) => repository.get_at(id, v).await?,
    };
    Ok(endpoint_response(StatusCode::OK, &endpoint))
}

/// What `If-Match` asks for.
enum IfMatch {
    /// No header, or `*`: any current version.
    Any,
    /// One of these versions (the client's entity tags).
    Versions(Vec<u64>),
    /// Tags that are not versions of ours: never current.
    Never,
}

/// Reads `If-Match`: `"N"` (or several, comma-separated), `*`. A header that is not a list of
/// entity tags is a 400.
fn if_match(headers: &HeaderMap) -> Result<IfMatch, HttpError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(IfMatch::Any);
    };
    let text = value
        .to_str()
        .map_err(|_| bad_request("If-Match is not text"))?
        .trim();
    if text == "*" {
        return Ok(IfMatch::Any);
    }
    let mut versions = Vec::new();
    for tag in text.split(',').map(str::trim) {
        // A weak tag never matches (If-Match compares strongly).
        let weak = tag.starts_with("W/");
        let quoted = tag.trim_start_matches("W/");
        let Some(inner) = quoted.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
            return Err(bad_request(format!(
                "If-Match must hold entity tags such as \"3\", not {tag:?}"
            ))
            .into());
        };
        if !weak {
            if let Ok(v) = inner.parse::<u64>() {
                versions.push(v);
            }
        }
    }
    Ok(match versions.is_empty() {
        true => IfMatch::Never,
        false => IfMatch::Versions(versions),
    })
}

/// `PATCH /endpoints/{id}`: renames. With `If-Match: "N"` (or a list of tags) only a current
/// version it names is renamed (412 otherwise, also when a concurrent save wins); without it
/// the rename is retried on a conflict, up to `WIDGETS_RENAME_ATTEMPTS` attempts.
pub(crate) async fn rename(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<Rename>,
) -> Result<Response, HttpError> {
    let precondition = if_match(&headers)?;
    check_name(&body.name)?;
    let app = state.app();
    let endpoint = match precondition {
        IfMatch::Any => {
            let attempts = Retry::attempts(state.config().rename_attempts);
            app.update_with_retry(id, attempts, |e: &mut WidgetRegistryEndpoint| {
                e.rename(&body.name)
            })
            .await?
        }
        IfMatch::Versions(expected) => {
            let mut endpoint: WidgetRegistryEndpoint = app.repository().get(id).await?;
            if !expected.contains(&endpoint.version()) {
                let named = expected.iter().max().copied().unwrap_or_default();
                return Err(precondition_failed(named, endpoint.version()).into());
            }
            endpoint.rename(&body.name).map_err(invalid)?;
            app.save(&mut endpoint)
                .await
                .map_err(HttpError::precondition)?;
            endpoint
        }
        IfMatch::Never => {
            let current = app.store().stream_version(id).await?;
            if current == 0 {
                return Err(eventsourcing::Error::NotFound { id, version: None }.into());
            }
            return Err(eventsourcing_axum::Problem::new(
                StatusCode::PRECONDITION_FAILED,
                eventsourcing_axum::types::PRECONDITION_FAILED,
                "Precondition Failed",
            )
            .with_detail(format!(
                "If-Match names no version of this endpoint; the current version is {current}"
            ))
            .into());
        }
    };
    Ok(endpoint_response(StatusCode::OK, &endpoint))
}

/// `?after=…&limit=N` of a paged listing: what comes after the key `after`, `N` at most.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery<A> {
    after: Option<A>,
    limit: Option<usize>,
}

/// The `after` of the next page: the last item's key if this page is full.
fn next_after<T, A>(items: &[T], limit: usize, key: impl FnOnce(&T) -> A) -> Option<A> {
    (items.len() == limit)
        .then(|| items.last().map(key))
        .flatten()
}

/// `GET /endpoints/{id}/history[?after=V&limit=N]`: the events after version `V`, `N` at most.
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery<u64>>,
) -> Result<Json<HistoryPage>, HttpError> {
    let limit = page_size(query.limit)?;
    let after = query.after.unwrap_or(0);
    let store = state.app().store();
    let up_to = after.saturating_add(limit as u64);
    let stored = store.load(id, after, Some(up_to)).await?;
    if stored.is_empty() && store.stream_version(id).await? == 0 {
        return Err(eventsourcing::Error::NotFound { id, version: None }.into());
    }
    let codec = state.app().codec();
    let mut events = Vec::with_capacity(stored.len());
    for event in &stored {
        let decoded = event.decode::<WidgetRegistryEndpointEvent, _>(codec)?;
        events.push(EventView::of(event, decoded));
    }
    Ok(Json(HistoryPage {
        id,
        next_after: next_after(&events, limit, |e| e.version),
        events,
    }))
}

/// `GET /tenants/{tenant}/endpoints[?after=ID&limit=N]`: the tenant's endpoints by id, from the
/// read model (eventually consistent: a save shows once the projection has handled it).
pub(crate) async fn tenant_endpoints(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(query): Query<PageQuery<Uuid>>,
) -> Result<Json<TenantPage>, HttpError> {
    check_tenant(&tenant).map_err(|p| bad_request(p.detail.unwrap_or_default()))?;
    let limit = page_size(query.limit)?;
    let page = Page {
        tenant: &tenant,
        after: query.after,
        limit,
    };
    let endpoints = state.read_model().list(page).await?;
    Ok(Json(TenantPage {
        next_after: next_after(&endpoints, limit, |e| e.id),
        tenant,
        endpoints,
    }))
}
