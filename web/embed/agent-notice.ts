// The embeddable agent notice (placeholder: filled in by its own change).
export {};
