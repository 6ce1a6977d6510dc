"""A plain PyTorch training script as people write them: argparse flags in, printed lines out.

    python examples/argparse_train.py --lr 0.01 --epochs 10 --seed 1 --out /tmp/run

It trains a small MLP on scikit-learn's bundled 8x8 digits and prints one line per epoch
(`epoch 3/10 loss 0.4123 val_accuracy 0.9111`); with --out it also writes the correctness of each validation
example to OUT/val_correct.json. Nothing here knows about autopilot: examples/argparse_study.yaml tells it how to
pass the flags and read the lines.
"""

import argparse
import json
import os

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train an MLP on the 8x8 digits.")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder to write val_correct.json to")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    x, y = load_digits(return_X_y=True)
    # a fixed split (random_state=0): every run is evaluated on the same validation examples
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    x_train, x_val = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_val, dtype=torch.float32)
    y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)
    model = torch.nn.Sequential(torch.nn.Linear(64, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, 10))
    optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    optimizer = optimizers[args.optimizer](model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(y_train)).split(args.batch_size):
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            correct = (model(x_val).argmax(1) == y_val).float()
        print(f"epoch {epoch}/{args.epochs} loss {total / len(y_train):.4f} val_accuracy {correct.mean():.4f}")
    if args.out:
        with open(os.path.join(args.out, "val_correct.json"), "w") as f:
            json.dump(correct.tolist(), f)
    print("done")


if __name__ == "__main__":
    main()
