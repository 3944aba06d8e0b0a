export * from './cpio.js';
export * from './modules.js';
export * from './guest.js';
export * from './assets.js';
