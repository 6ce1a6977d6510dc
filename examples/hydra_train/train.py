"""A Hydra app that logs to TensorBoard, as people write them. autopilot runs it unchanged.

    python examples/hydra_train/train.py optim.lr=0.003 train.epochs=5

It trains a small MLP on scikit-learn's bundled 8x8 digits and logs `train/loss` per step and `val/accuracy` per
epoch to TensorBoard under its Hydra output folder, where it also writes the correctness of each validation
example (val_correct.json). Nothing here knows about autopilot: study.yaml beside it says how to pass the
overrides and where the metrics are.
"""

import json
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.tensorboard import SummaryWriter


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    x, y = load_digits(return_X_y=True)
    # a fixed split (random_state=0): every run is evaluated on the same validation examples
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    x_train, x_val = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_val, dtype=torch.float32)
    y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)
    model = torch.nn.Sequential(torch.nn.Linear(64, cfg.model.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(cfg.model.hidden, 10))
    optimizer = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.optim.name](
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    writer = SummaryWriter(log_dir=str(out / "tb"))
    step = 0
    for epoch in range(1, cfg.train.epochs + 1):
        model.train()
        for batch in torch.randperm(len(y_train)).split(cfg.train.batch_size):
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            writer.add_scalar("train/loss", loss.item(), step)
        model.eval()
        with torch.no_grad():
            correct = (model(x_val).argmax(1) == y_val).float()
        writer.add_scalar("val/accuracy", correct.mean().item(), step)
        print(f"epoch {epoch}: val/accuracy {correct.mean():.4f}")
    writer.close()
    (out / "val_correct.json").write_text(json.dumps(correct.tolist()))


if __name__ == "__main__":
    main()
