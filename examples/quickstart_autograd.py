"""Quickstart: autograd. Gradients by ``backward()`` and by ``torchlean.autograd.grad``."""

import torchlean as tl


def main() -> None:
    x = tl.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    w = tl.tensor([0.5, -1.0, 2.0], dtype="float64", requires_grad=True)
    y = (w * x * x).sum()  # y = sum_i w_i x_i^2
    y.backward()
    print("y =", y.item())
    print("dy/dx = 2 w x =", x.grad)  # [1, -4, 12]
    print("dy/dw = x^2   =", w.grad)  # [1, 4, 9]

    # functional form: gradients returned, nothing accumulated into .grad
    (gx,) = tl.autograd.grad((x.tanh() ** 2).sum(), x)
    print("d/dx sum(tanh(x)^2) =", gx)

    with tl.no_grad():  # no tape is recorded here
        z = x * 2
    print("under no_grad, z.requires_grad =", z.requires_grad)


if __name__ == "__main__":
    main()
