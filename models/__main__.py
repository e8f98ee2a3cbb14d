"""python -m models NAME [--input_size H,W] [--channels C]: a registered model's layers and parameter count."""
import config
from support.errors import ArgumentParser, image_size


def main(argv=None):
    p = ArgumentParser(description="Print the summary of a registered model at its default input or the one given.")
    p.add_argument("name", choices=list(config.MODELS), help="registered model")
    p.add_argument("--input_size", type=image_size, help="H,W (default: the model's own)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="input channels (default: the model's own)")
    args = p.parse_args(argv)
    spec = config.MODELS[args.name]
    spec.construct((*(args.input_size or spec.input_size), args.channels or spec.channels), 2).summary()


if __name__ == "__main__":
    main()
