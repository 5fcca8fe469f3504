"""Tiny faithful copies of the real folders users download: the same file names, config keys, special-token
ids, tokenizer kind and processor settings as the Hub folder, with tiny random weights. Tests use these
instead of folders made from library defaults, which hid bugs every real user hits.

clip.py   openai/clip-vit-*, LAION's HF-format CLIP, qihoo360/fg-clip-* (official FG-CLIP releases)
llava.py  a Vicuna/Llama folder with a SentencePiece tokenizer, llava-hf/llava-1.5-7b-hf
"""
