export * from './allocate.js';
export * from './guest-memory.js';
