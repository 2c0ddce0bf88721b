//! The block list as hosts receive it: signed by the trust root, naming every stored artifact
//! each block affects (so a host without the builder's store still refuses an artifact built on
//! a blocked commit), and with a maximum age after which hosts treat it as stale and refuse
//! everything rather than deploy on an old view.

use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::blocks::{AffectedArtifact, BlockList, ContentBlock};

/// The payload type of a signed, published block list.
pub const PUBLISHED_BLOCKS_PAYLOAD_TYPE: &str = "application/vnd.gantry.published-blocks.v1+json";
/// How long a published list counts as fresh unless the publisher says otherwise: a new block
/// reaches every host within this, as the controller republishes well before it runs out.
pub const DEFAULT_MAX_AGE_SECONDS: i64 = 60 * 60;
/// The longest maximum age a publisher may give: a week-old view of the blocks is no view.
pub const MAX_MAX_AGE_SECONDS: i64 = 7 * 24 * 60 * 60;

/// The file in a verifier's home that remembers the newest published block list it accepted.
pub const BLOCKS_PIN_FILE: &str = "blocks-pin.json";

/// What a verifier remembers of the newest block list it accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksPin {
    pub published_at: Timestamp,
    pub digest: crate::Digest,
}

/// A signed snapshot of the blocks in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBlocks {
    pub published_at: Timestamp,
    /// After this, hosts treat the list as stale: verification fails closed.
    pub expires_at: Timestamp,
    pub blocks: Vec<ContentBlock>,
    /// Every stored artifact a block affects, at publication.
    pub affected: Vec<AffectedArtifact>,
}

impl PublishedBlocks {
    /// Reads the signed copy of a published list (`<path>.dsse`; the readable file is never
    /// consulted), checks the trust root signed it, and refuses it once stale at `now`.
    pub fn read(
        path: &Path,
        root: &ed25519_dalek::VerifyingKey,
        now: Timestamp,
    ) -> Result<PublishedBlocks, Error> {
        let body = crate::keys::read_signed(path, PUBLISHED_BLOCKS_PAYLOAD_TYPE, root)?;
        let signed = crate::keys::signed_path(path);
        let published: PublishedBlocks = serde_json::from_slice(&body).map_err(|error| {
            Error::invalid(&signed, format!("not a published block list: {error}"))
        })?;
        let age = published.expires_at.as_second() - published.published_at.as_second();
        if !(0..=MAX_MAX_AGE_SECONDS).contains(&age) {
            return Err(Error::invalid(
                &signed,
                format!("a maximum age of {age}s is outside 0..={MAX_MAX_AGE_SECONDS}s"),
            ));
        }
        if now > published.expires_at {
            return Err(Error::Block(format!(
                "{}: the block list published at {} went stale at {}; a stale list could miss a \
                 block, so nothing verifies until a fresh one arrives (`gantry block publish` on \
                 the builder)",
                signed.display(),
                published.published_at,
                published.expires_at
            )));
        }
        Ok(published)
    }

    /// As [`PublishedBlocks::read`], for a verifier that remembers the newest list it accepted
    /// (`pin_path`): an older one is refused even while fresh, so replaying a list from before
    /// a block cannot lift it, and a second list published at the same moment is refused too.
    /// The pin moves to every newer list accepted.
    pub fn read_pinned(
        path: &Path,
        root: &ed25519_dalek::VerifyingKey,
        now: Timestamp,
        pin_path: &Path,
    ) -> Result<PublishedBlocks, Error> {
        let published = PublishedBlocks::read(path, root, now)?;
        let digest = crate::Digest::of(&serde_json::to_vec(&published).expect("list serializes"));
        let pin: Option<BlocksPin> = match std::fs::read(pin_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|error| {
                Error::invalid(pin_path, format!("not a block list pin: {error}"))
            })?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(Error::io(pin_path, error)),
        };
        if let Some(pin) = &pin {
            let older = published.published_at < pin.published_at;
            let other = published.published_at == pin.published_at && digest != pin.digest;
            if older || other {
                return Err(Error::Block(format!(
                    "{}: the block list published at {} is {} the one accepted before \
                     (published at {}); a replayed list could lift a block, so nothing \
                     verifies on it: fetch the current list from the builder",
                    crate::keys::signed_path(path).display(),
                    published.published_at,
                    if older { "older than" } else { "another list than" },
                    pin.published_at
                )));
            }
        }
        if pin.as_ref().is_none_or(|pin| pin.published_at < published.published_at) {
            let pinned = BlocksPin { published_at: published.published_at, digest };
            crate::store::write_atomically(
                pin_path,
                &serde_json::to_vec_pretty(&pinned).expect("pin serializes"),
            )?;
        }
        Ok(published)
    }

    /// The list to check artifacts against.
    pub fn into_list(self) -> BlockList {
        BlockList::read_only(self.blocks, self.affected)
    }
}
