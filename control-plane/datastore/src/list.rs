//! The part of list that is the same for every backend: turning a request
//! into a key range at a revision, and a page of rows into a response.

use crate::continuation::ContinueToken;
use crate::error::Result;
use crate::key::{prefix_end, validate_prefix};
use crate::types::{KeyValue, ListRequest, ListResponse, Revision};

/// What a backend has to read for one page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPlan {
    /// First key to return (inclusive): the prefix, or where the last page stopped.
    pub start_key: String,
    /// End of the prefix's range (exclusive), as bytes; `None` for no end.
    pub end_key: Option<Vec<u8>>,
    /// The snapshot to read. `None` means the latest; the backend reports which
    /// revision that was.
    pub revision: Option<Revision>,
    /// The most keys to return. Backends read one more row than this to learn
    /// whether another page follows.
    pub limit: Option<usize>,
}

impl ListPlan {
    pub fn new(req: &ListRequest) -> Result<Self> {
        validate_prefix(&req.prefix)?;
        let (start_key, revision) = match &req.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token, &req.prefix)?;
                (token.start_key, Some(token.revision))
            }
            None => (req.prefix.clone(), req.revision.filter(|r| *r > 0)),
        };
        Ok(ListPlan {
            start_key,
            end_key: prefix_end(req.prefix.as_bytes()),
            revision,
            limit: req.limit.filter(|l| *l > 0),
        })
    }

    /// How many rows the backend should fetch: one past the limit.
    pub fn fetch_limit(&self) -> Option<usize> {
        self.limit.map(|l| l + 1)
    }

    /// Builds the response from up to `limit + 1` rows read at `revision`.
    pub fn page(&self, revision: Revision, mut kvs: Vec<KeyValue>) -> ListResponse {
        let continue_token = match self.limit {
            Some(limit) if kvs.len() > limit => {
                let next = kvs.drain(limit..).next().expect("one row past the limit");
                Some(
                    ContinueToken {
                        revision,
                        start_key: next.key,
                    }
                    .encode(),
                )
            }
            _ => None,
        };
        ListResponse {
            revision,
            kvs,
            continue_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::new(),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    #[test]
    fn pages_carry_the_snapshot_revision() {
        let plan = ListPlan::new(&ListRequest::prefix("/a/").limit(2)).unwrap();
        assert_eq!(plan.fetch_limit(), Some(3));
        let page = plan.page(7, vec![kv("/a/1"), kv("/a/2"), kv("/a/3")]);
        assert_eq!(page.kvs.len(), 2);
        let next =
            ListPlan::new(&ListRequest::prefix("/a/").continue_from(page.continue_token.unwrap()))
                .unwrap();
        assert_eq!(next.start_key, "/a/3");
        assert_eq!(next.revision, Some(7));
        assert_eq!(next.end_key, Some(b"/a0".to_vec()));
    }

    #[test]
    fn last_page_has_no_token() {
        let plan = ListPlan::new(&ListRequest::prefix("/a/").limit(2)).unwrap();
        assert!(
            plan.page(7, vec![kv("/a/1"), kv("/a/2")])
                .continue_token
                .is_none()
        );
    }
}
