"""Model families (one module each), the machinery they share (`base`, `hf`) and the `registry` of them."""
