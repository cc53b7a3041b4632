"""Quickstart: tensors. Create, combine, reshape and reduce tensors; they behave like PyTorch's."""

import torchlean as tl


def main() -> None:
    a = tl.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # float32 by default
    b = tl.ones(3, 2)
    print("a =", a)
    print("a.shape =", a.shape, " a.dtype =", a.dtype)
    print("a + 1 =", a + 1)
    print("a * a =", a * a)  # elementwise, with broadcasting
    print("a @ b =", a @ b)  # matrix product: (2, 3) @ (3, 2) -> (2, 2)
    print("a.T.shape =", a.T.shape, " a.reshape(3, 2) =", a.reshape(3, 2))
    print("a.sum() =", a.sum().item(), " a.mean(dim=0) =", a.mean(dim=0))
    print("relu(a - 3) =", tl.nn.functional.relu(a - 3))
    print("float64 copy:", a.double().dtype, " as numpy:", type(a.numpy()).__name__)


if __name__ == "__main__":
    main()
