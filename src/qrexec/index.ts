// Public surface of Isola's qrexec layer: the wire protocol, its frame parser, isolad's agent listener and the
// DATA-stream helpers for the CLI. The agent bundle imports protocol.ts and frame-reader.ts directly instead.

export * from './protocol';
export { ChunkedFrame, FrameReader, FramedSocket, type Frame, type FramedSocketOptions } from './frame-reader';
export {
  AgentListener, ExecSession, type AgentListenerOptions, type ExecOptions,
} from './agent-link';
export { runDataSession, pipeFrames, EXIT_QREXEC_PROBLEM, type DataSessionIO, type PipeFramesOptions } from './client';
export { Mux, MuxChannel, type MuxOptions } from './mux';
