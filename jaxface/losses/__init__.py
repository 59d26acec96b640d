"""Pure loss functions: (arrays, frozen callables) -> scalar or dict of scalars."""
