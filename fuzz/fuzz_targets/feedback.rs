#![no_main]

// Human feedback's decoders of outside bytes: a runner's question and its host's reply
// (protocol §10), a worker's reply off Redis, an answer as a person types it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graflow_protocol::fuzzing::feedback_frames(data);
    graflow_redis::fuzzing::ask_replies(data);
    graflow_store::fuzzing::answers(data);
});
