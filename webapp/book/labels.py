"""The few words the book prints itself ("The End", "Scan to download this book"), in the book's language.

Languages not listed get English.
"""

from __future__ import annotations

from webapp.book.text_shaping import primary_language

THE_END = {
    "en": "The End", "es": "Fin", "fr": "Fin", "de": "Ende", "it": "Fine", "pt": "Fim", "nl": "Einde",
    "sv": "Slut", "no": "Slutt", "da": "Slut", "fi": "Loppu", "pl": "Koniec", "cs": "Konec", "tr": "Son",
    "el": "Τέλος", "ru": "Конец", "uk": "Кінець", "ar": "النهاية", "he": "סוף", "fa": "پایان", "hi": "समाप्त",
    "th": "จบ", "vi": "Hết", "id": "Tamat", "zh": "完", "ja": "おしまい", "ko": "끝",
}

SCAN_TO_DOWNLOAD = {
    "en": "Scan to download this book",
    "es": "Escanea para descargar este libro",
    "fr": "Scannez pour télécharger ce livre",
    "de": "Scannen, um dieses Buch herunterzuladen",
    "it": "Inquadra per scaricare questo libro",
    "pt": "Escaneie para baixar este livro",
    "nl": "Scan om dit boek te downloaden",
    "ru": "Отсканируйте, чтобы скачать эту книгу",
    "uk": "Скануйте, щоб завантажити цю книжку",
    "el": "Σαρώστε για να κατεβάσετε αυτό το βιβλίο",
    "tr": "Bu kitabı indirmek için tarayın",
    "ar": "امسح الرمز لتنزيل هذا الكتاب",
    "he": "סרקו כדי להוריד את הספר",
    "hi": "यह किताब डाउनलोड करने के लिए स्कैन करें",
    "th": "สแกนเพื่อดาวน์โหลดหนังสือเล่มนี้",
    "zh": "扫码下载这本书",
    "ja": "スキャンしてこの本をダウンロード",
    "ko": "스캔해서 이 책을 내려받으세요",
}


def the_end(language: str) -> str:
    return THE_END.get(primary_language(language), THE_END["en"])


def scan_to_download(language: str) -> str:
    return SCAN_TO_DOWNLOAD.get(primary_language(language), SCAN_TO_DOWNLOAD["en"])
