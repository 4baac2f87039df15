//! data20's domain model. Everything here is pure logic with native unit tests;
//! the Spin-facing adapters live in `data20-redis`, `data20-sqlite` and `data20-http`.

pub mod access;
pub mod error;
pub mod etag;
pub mod idempotency;
pub mod job;
pub mod keys;
pub mod limits;
pub mod log;
pub mod ratelimit;
pub mod registry;
pub mod settings;
pub mod time;

pub use error::{ApiError, ErrorBody};
pub use job::{Cursor, JobEvent, JobEventKind, JobId, JobStatus, JobView, ListFilter, OutputFile};
pub use registry::{Registry, RegistryError, ToolName, ToolOutput, ToolSpec, REGISTRY_DIR};
pub use settings::Settings;
