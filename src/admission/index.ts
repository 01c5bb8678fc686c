export * from './review';
export * from './response';
export * from './admit';
export * from './answer';
