//! Serving the OpenAPI documents that `kedge-resources` generates.
//!
//! `/openapi/v2` answers JSON, or the gnostic protobuf client-go asks for
//! (kubectl validates `kind: List` documents against it).
//! `/openapi/v3` lists one document per group-version with a content hash;
//! `/openapi/v3/<path>?hash=` serves it as upstream's handler does: a stale
//! hash is redirected to the current one, a matching one may be cached for
//! good.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use kedge_resources::openapi;

use crate::handlers::Body;
use crate::request::{Query, Route};
use crate::status::{ApiError, ApiResult};

fn bytes_response(body: &'static [u8], content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body)).boxed_unsync());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn accepts_json(accept: Option<&str>) -> bool {
    match accept {
        None => true,
        Some(a) => a.split(',').any(|item| {
            let media = item.split(';').next().unwrap_or_default().trim();
            matches!(media, "" | "application/json" | "*/*" | "application/*")
        }),
    }
}

pub fn serve(route: &Route, accept: Option<&str>, query: &Query) -> ApiResult<Response<Body>> {
    match route {
        Route::OpenApiV2 => {
            let wants_protobuf = accept.is_some_and(|a| {
                a.split(',').any(|item| {
                    let media = item.split(';').next().unwrap_or_default().trim();
                    openapi::V2_PROTOBUF_MEDIA_TYPES.contains(&media)
                })
            });
            if wants_protobuf {
                Ok(bytes_response(
                    openapi::v2_protobuf(),
                    openapi::V2_PROTOBUF_CONTENT_TYPE,
                ))
            } else if accepts_json(accept) {
                Ok(bytes_response(openapi::v2_json(), "application/json"))
            } else {
                Err(ApiError::not_acceptable(
                    "only application/json and the OpenAPI v2 protobuf are served",
                ))
            }
        }
        Route::OpenApiV3Index => {
            let body = serde_json::to_vec(&openapi::v3_index()).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Route::OpenApiV3(path) => {
            let (Some(body), Some(hash)) =
                (openapi::v3_group_version_json(path), openapi::v3_hash(path))
            else {
                return Err(ApiError::path_not_found());
            };
            if !accepts_json(accept) {
                return Err(ApiError::not_acceptable(
                    "only application/json is served for OpenAPI v3",
                ));
            }
            match query.get("hash") {
                Some(h) if h != hash => {
                    let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
                    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
                    if let Ok(loc) =
                        HeaderValue::from_str(&format!("/openapi/v3/{path}?hash={hash}"))
                    {
                        resp.headers_mut().insert(header::LOCATION, loc);
                    }
                    Ok(resp)
                }
                matched => {
                    let mut resp = bytes_response(body, "application/json");
                    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                        resp.headers_mut().insert(header::ETAG, etag);
                    }
                    if matched.is_some() {
                        resp.headers_mut().insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, immutable"),
                        );
                    }
                    resp.headers_mut()
                        .insert(header::VARY, HeaderValue::from_static("Accept"));
                    Ok(resp)
                }
            }
        }
        _ => Err(ApiError::path_not_found()),
    }
}
