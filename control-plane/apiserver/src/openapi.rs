//! Serving the OpenAPI documents that `kedge-resources` generates.

use http::Response;

use crate::handlers::Body;
use crate::request::Route;
use crate::status::{ApiError, ApiResult};

pub fn serve(_route: &Route, _accept: Option<&str>) -> ApiResult<Response<Body>> {
    Err(ApiError::path_not_found())
}
