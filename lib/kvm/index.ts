export * from './constants.js';
export * from './errors.js';
export * from './exits.js';
export * from './kvm.js';
export * from './structs.js';
export * from './vcpu.js';
export * from './vm.js';
