//! The JSON Schema of the pipeline format, generated from the raw types. A test keeps
//! `schemas/pipeline.schema.json` equal to it.

use crate::raw::RawPipeline;

pub fn pipeline_schema_json() -> String {
    let schema =
        schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<RawPipeline>();
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}
