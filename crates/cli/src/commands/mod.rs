pub mod pipelines;
